// Review of the gateway metrics: netloom_gateway_rate_limited_total is read from Gateway.limitStats(), which
// builds `rejected` by assignment on a plain object (`rejected[r.name] = ...`). A route named `__proto__`
// (any non-empty string is a route name; the mirror and fault figures are built from entries for exactly
// this reason) loses its count: the assignment sets the object's prototype instead, and the series is
// missing from /metrics (and /stats).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseExposition } from '../../fixtures/prometheus.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';

test('the rate-limited count of a route named __proto__ is on /metrics', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig(
      { app: upstreamOf([up.address]) },
      [
        {
          name: '__proto__',
          match: { path: '/' },
          upstream: 'app',
          filters: [
            {
              name: 'rate-limit',
              limits: [{ algorithm: 'token-bucket', key: ['route'], rate: 1, burst: 1 }],
            },
          ],
        },
      ],
      { admin: { address: '127.0.0.1:0', token: TOKEN } },
    ),
  );
  t.after(() => gw.stop());
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push((await send(gw.port, '/x')).status);
  assert.deepEqual(statuses, [200, 429, 429, 429]);
  await sleep(100);
  const r = await send(gw.gateway.admin!.port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  const m = parseExposition(r.text);
  assert.equal(m.get('netloom_gateway_rate_limited_total{route="__proto__"}'), 3);
});
