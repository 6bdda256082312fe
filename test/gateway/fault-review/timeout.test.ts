// Review of the fault filter's delay against the upstream's total timeout.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

describe('fault delay vs timeouts review', { timeout: 30_000 }, () => {
  test('a delay past the total timeout: never a 504 for a request the upstream was sent', async (t) => {
    const up = await httpUpstream((_req, res) => setTimeout(() => res.end('ok'), 20));
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address], { timeouts: { total: 200 } }) }, [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'up',
          filters: [{ name: 'fault', delay: { ms: 400 } }],
        },
      ]),
    );
    t.after(() => gw.stop());
    const r = await send(gw.port, '/');
    await sleep(100);
    // The budget is spent by the delay: answer 504 without sending up (or do not count the delay: 200).
    if (r.status === 504)
      assert.equal(up.requests, 0, `504 "${r.text}" yet the upstream got ${up.requests} request(s)`);
    else assert.equal(r.status, 200, r.text);
  });
});
