// Review (breaker-review): probes are not tied to the half-open spell that let them through. A probe of a
// spell that already ended (another probe failed, the circuit opened again) completes during the next spell
// and is counted there as one of its successes: the circuit closes with one of the new spell's probes still
// out, and when that one fails, the circuit is already closed and the failure is ignored.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

describe('breaker-review: probes from an earlier half-open spell', { timeout: 15_000 }, () => {
  test('a spell closes only on its own probes; a failing probe of the spell opens the circuit', async (t) => {
    const mode = { status: 500 };
    const up = await httpUpstream((req, res) => {
      if (req.url === '/slow-ok') setTimeout(() => res.writeHead(200).end('ok'), 700);
      else if (req.url === '/late-500') setTimeout(() => res.writeHead(500).end('late'), 600);
      else res.writeHead(mode.status).end('x');
    });
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address], { retries: 0 }) }, [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'up',
          filters: [{ name: 'circuit-breaker', minimumRequests: 2, openTime: 300, halfOpenRequests: 2 }],
        },
      ]),
    );
    t.after(() => gw.stop());
    assert.equal((await send(gw.port, '/')).status, 500);
    assert.equal((await send(gw.port, '/')).status, 500);
    assert.equal((await send(gw.port, '/')).status, 503);
    await sleep(350);
    // Spell 1: probe A (slow, will succeed at ~700 ms), probe B fails at once: open again.
    const a = send(gw.port, '/slow-ok');
    await sleep(20);
    assert.equal((await send(gw.port, '/')).status, 500, 'probe B');
    await sleep(330);
    // Spell 2 (~350 ms): probe C will fail at ~950 ms; probe D succeeds now.
    const c = send(gw.port, '/late-500');
    await sleep(30);
    mode.status = 200;
    assert.equal((await send(gw.port, '/')).status, 200, 'probe D');
    assert.equal((await a).status, 200); // the stale probe A completes (~700 ms)
    assert.equal((await c).status, 500); // probe C of spell 2 failed (~950 ms)
    await sleep(30);
    // Spell 2 had a failed probe: the circuit is open again (until ~1250 ms).
    assert.equal((await send(gw.port, '/')).status, 503, 'open again after the failed probe C');
  });
});
