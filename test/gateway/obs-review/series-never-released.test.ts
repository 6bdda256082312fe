// Review of the metrics memory under reloads: series are claimed for good. Every version a loop builds
// claims the series of its route names (three at build: the duration histogram and the two byte counters),
// and nothing is released when a reload removes a route: the removed routes stay on /metrics, and a gateway
// whose routes are renamed over time (a generated configuration, a deploy per branch) exhausts the
// directory; from then on the requests of new routes are counted nowhere.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseExposition } from '../../fixtures/prometheus.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';

function routesOf(generation: number, count: number): Record<string, unknown>[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `deploy-${generation}-svc-${i}`,
    match: { path: `/svc${i}` },
    upstream: 'app',
  }));
}

// Fixed: a loop lets go of the series of route names none of its versions uses any more (SeriesLedger),
// and the memory gives their room to new series.
test('routes renamed by reloads: the routes in force are still counted after 40 reloads', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const config = (generation: number) =>
    gatewayConfig({ app: upstreamOf([up.address]) }, routesOf(generation, 40), {
      admin: { address: '127.0.0.1:0', token: TOKEN },
    });
  const gw = await startTestGateway(config(0));
  t.after(() => gw.stop());
  const last = 40;
  for (let g = 1; g <= last; g++) {
    await gw.source.set(config(g));
    const r = await gw.gateway.reload();
    assert.ok(r.ok && r.changed, JSON.stringify(r));
  }
  // 40 routes in force, a request each.
  for (let i = 0; i < 40; i++) assert.equal((await send(gw.port, `/svc${i}/x`)).status, 200);
  await sleep(100);
  const r = await send(gw.gateway.admin!.port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  const m = parseExposition(r.text);
  let counted = 0;
  for (let i = 0; i < 40; i++)
    if (
      m.get(
        `netloom_gateway_requests_total{route="deploy-${last}-svc-${i}",domain="default",upstream="app",status="2xx"}`,
      ) === 1
    )
      counted++;
  const stale = [...m.keys()].filter((k) =>
    k.startsWith('netloom_gateway_request_duration_seconds_count{route="deploy-0-'),
  ).length;
  assert.equal(stale, 0, 'the removed routes are no longer listed');
  assert.equal(
    counted,
    40,
    `${40 - counted} of the 40 routes in force uncounted; the 40 removed routes of version 1 still listed: ${stale > 0} (metricsDropped ${gw.gateway.listeners[0]!.metricsDropped})`,
  );
});
