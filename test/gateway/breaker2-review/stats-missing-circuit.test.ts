// Review (breaker2-review): /stats lists the `upstream:NAME` circuits of a route from its configured
// upstream and traffic upstreams only. A `scope: upstream` breaker after a filter that calls useUpstream
// keeps (and opens) the circuit of the upstream the request really goes to, and /stats never shows it:
// it shows `upstream:one`, all zeros, while `upstream:two` is open and answering 503s.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfig, httpUpstream, send, sendJson, startTestGateway, upstreamOf } from '../support.ts';

const PLUGIN = new URL('../fixtures/governance-filters.ts', import.meta.url);
const TOKEN = 'breaker2-review-admin-token-3';

describe('breaker2-review: /stats and circuits reached through useUpstream', { timeout: 15_000 }, () => {
  test('the open circuit is on /stats', async (t) => {
    const one = await httpUpstream((_req, res) => res.writeHead(200).end('one'));
    t.after(() => one.close());
    const two = await httpUpstream((_req, res) => res.writeHead(500).end('two'));
    t.after(() => two.close());
    const gw = await startTestGateway(
      gatewayConfig(
        {
          one: upstreamOf([one.address], { retries: 0 }),
          two: upstreamOf([two.address], { retries: 0 }),
        },
        [
          {
            name: 'api',
            match: { path: '/' },
            upstream: 'one',
            filters: [
              { name: 'switch-on-header' },
              { name: 'circuit-breaker', scope: 'upstream', minimumRequests: 4, openTime: 10_000 },
            ],
          },
        ],
        { admin: { address: '127.0.0.1:0', token: TOKEN } },
      ),
      { plugins: [PLUGIN] },
    );
    t.after(() => gw.stop());
    const toTwo = { headers: { 'x-switch': 'two' } };
    for (let i = 0; i < 4; i++) assert.equal((await send(gw.port, '/', toTwo)).status, 500);
    assert.equal((await send(gw.port, '/', toTwo)).status, 503, 'the circuit of two is open');
    const stats = await sendJson<{ circuits: Record<string, { opened: number }> }>(
      gw.gateway.admin!.port,
      '/stats',
      { headers: { authorization: `Bearer ${TOKEN}` } },
    );
    assert.equal(
      stats.json.circuits['upstream:two']?.opened,
      1,
      `circuits on /stats: ${JSON.stringify(stats.json.circuits)}`,
    );
  });
});
