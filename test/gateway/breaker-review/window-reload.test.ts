// Review (breaker-review): a reload that widens `window` keeps the Circuit (setup.local) but changes the
// bucket width; the buckets' epochs were counted in the old, narrower width (larger numbers), so
// `epoch[b] <= e - BUCKETS` never holds for them again and outcomes long outside the window count forever
// (until a request happens to land in the same bucket index).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const config = (address: string, breaker: Record<string, unknown>) =>
  gatewayConfig({ up: upstreamOf([address], { retries: 0 }) }, [
    { name: 'api', match: { path: '/' }, upstream: 'up', filters: [{ name: 'circuit-breaker', ...breaker }] },
  ]);

describe('breaker-review: reloading a wider window', { timeout: 15_000 }, () => {
  test('outcomes older than the (new) window do not count', async (t) => {
    const mode = { status: 500 };
    const up = await httpUpstream((_req, res) => res.writeHead(mode.status).end('x'));
    t.after(() => up.close());
    // 100 ms window (10 ms buckets), and it cannot open: the failures only fill buckets.
    const gw = await startTestGateway(config(up.address, { window: 100, minimumRequests: 1000 }));
    t.after(() => gw.stop());
    // Failures spread over a few 10 ms buckets (several bucket indices).
    for (let i = 0; i < 8; i++) {
      assert.equal((await send(gw.port, '/')).status, 500);
      await sleep(12);
    }
    gw.source.set(config(up.address, { window: 1000, minimumRequests: 3, openTime: 10_000 }));
    const reloaded = await gw.gateway.reload();
    assert.equal(reloaded.ok, true);
    // Well past the new 1 s window: the failures are history.
    await sleep(1300);
    mode.status = 200;
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await send(gw.port, '/')).status);
    assert.deepEqual(statuses, [200, 200, 200, 200], 'the window holds only the new successes');
  });
});
