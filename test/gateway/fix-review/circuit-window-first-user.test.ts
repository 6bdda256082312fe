// Fix review (bd9804c): one circuit an upstream and loop "counts in the window of the entry that made
// it". Route a's breaker says `window: 60000` (4 failures in a minute open it); route b's, on the same
// upstream, says `window: 1000`. Whichever route's request reaches the upstream first decides the
// window for both: after one request through b, four failures through a 400 ms apart (1.2 s in all) never
// open the circuit, since at most three of them fall within b's one second. a's `window` is ignored.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

describe('fix-review: a shared upstream circuit and two windows', { timeout: 15_000 }, () => {
  test("route a's failures are counted over a's own window (a minute)", async (t) => {
    const mode = { status: 200 };
    const up = await httpUpstream((_req, res) => res.writeHead(mode.status).end('u'));
    t.after(() => up.close());
    const breaker = (window: number) => ({
      name: 'circuit-breaker',
      scope: 'upstream',
      window,
      minimumRequests: 4,
      openTime: 30_000,
    });
    const gw = await startTestGateway(
      gatewayConfig({ u: upstreamOf([up.address], { retries: 0 }) }, [
        { name: 'a', match: { path: '/a' }, upstream: 'u', filters: [breaker(60_000)] },
        { name: 'b', match: { path: '/b' }, upstream: 'u', filters: [breaker(1_000)] },
      ]),
    );
    t.after(() => gw.stop());
    assert.equal((await send(gw.port, '/b')).status, 200);
    // Let b's success leave the one-second window, so only a's failures are counted.
    await sleep(1200);
    mode.status = 500;
    for (let i = 0; i < 4; i++) {
      if (i > 0) await sleep(400);
      assert.equal((await send(gw.port, '/a')).status, 500);
    }
    const next = await send(gw.port, '/a');
    assert.equal(next.status, 503, `4 of 4 failed within a's minute: the circuit opens; got ${next.status}`);
  });
});
