// Review (breaker2-review): two routes with `scope: upstream` on one upstream but, say, a different
// openTime keep two circuits (the fingerprint tells them apart) that write the same shared counters
// (`upstream:up`): with one loop, /stats says two loops have the circuit open, and failures seen through
// one route do not open it for the other, as the module comment promises ("failures seen through one route
// open it for all").
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfig, httpUpstream, send, sendJson, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'breaker2-review-admin-token-2';

describe('breaker2-review: routes sharing an upstream circuit with different settings', {
  timeout: 15_000,
}, () => {
  test('openLoops counts loops, not circuits', async (t) => {
    const up = await httpUpstream((_req, res) => res.writeHead(500).end('up'));
    t.after(() => up.close());
    const breaker = (openTime: number) => ({
      name: 'circuit-breaker',
      scope: 'upstream',
      minimumRequests: 4,
      openTime,
    });
    const gw = await startTestGateway(
      gatewayConfig(
        { up: upstreamOf([up.address], { retries: 0 }) },
        [
          { name: 'a', match: { path: '/a' }, upstream: 'up', filters: [breaker(10_000)] },
          { name: 'b', match: { path: '/b' }, upstream: 'up', filters: [breaker(20_000)] },
        ],
        { admin: { address: '127.0.0.1:0', token: TOKEN } },
      ),
    );
    t.after(() => gw.stop());
    for (let i = 0; i < 4; i++) assert.equal((await send(gw.port, '/a')).status, 500);
    assert.equal((await send(gw.port, '/a')).status, 503);
    const b = (await send(gw.port, '/b')).status;
    for (let i = 0; i < 3; i++) await send(gw.port, '/b');
    const stats = await sendJson<{ circuits: Record<string, { openLoops: number; opened: number }> }>(
      gw.gateway.admin!.port,
      '/stats',
      { headers: { authorization: `Bearer ${TOKEN}` } },
    );
    assert.ok(
      stats.json.circuits['upstream:up']!.openLoops <= 1,
      `openLoops ${stats.json.circuits['upstream:up']!.openLoops} with loops: 1`,
    );
    assert.equal(b, 503, 'the upstream circuit a opened is open for b');
  });
});
