// Defect: the SeriesLedger (gateway/metrics.ts) keys what a loop may let go by route and upstream *name*
// only, but `netloom_gateway_requests_total` is labelled by route, domain, upstream and status. A reload
// that keeps a route's name and changes its `domain` leaves the series of the old domain held for good:
// no version produces them any more, yet they stay on /metrics (and in the metrics memory) as long as the
// route name lives. A route whose domain changes over reloads (a per-deploy or per-tenant domain) leaks
// six series a change, like the renames this change set out to fix.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseExposition } from '../../fixtures/prometheus.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'release-review-admin-token-0123456789';

async function scrape(adminPort: number): Promise<Map<string, number>> {
  const r = await send(adminPort, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200);
  return parseExposition(r.text);
}

test("a route's domain changed by a reload: the old domain's series leave /metrics once drained", async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const config = (domain: string) =>
    gatewayConfig(
      { app: upstreamOf([up.address]) },
      [{ name: 'a', domain, match: { path: '/' }, upstream: 'app' }],
      {
        admin: { address: '127.0.0.1:0', token: TOKEN },
      },
    );
  const gw = await startTestGateway(config('team-old'));
  t.after(() => gw.stop());
  const admin = gw.gateway.admin!.port;
  for (let i = 0; i < 5; i++) assert.equal((await send(gw.port, '/x')).status, 200);
  await sleep(100);
  const old = 'netloom_gateway_requests_total{route="a",domain="team-old",upstream="app",status="2xx"}';
  assert.equal((await scrape(admin)).get(old), 5);
  await gw.source.set(config('team-new'));
  const r = await gw.gateway.reload();
  assert.ok(r.ok && r.changed, JSON.stringify(r));
  for (let i = 0; i < 5; i++) assert.equal((await send(gw.port, '/x')).status, 200);
  await sleep(1300); // nothing in flight: the old version closed at the swap; gauges ran since
  const m = await scrape(admin);
  assert.equal(
    m.get('netloom_gateway_requests_total{route="a",domain="team-new",upstream="app",status="2xx"}'),
    5,
  );
  const stale = [...m.keys()].filter((k) => k.includes('domain="team-old"'));
  assert.deepEqual(stale, [], 'no version uses domain team-old any more');
});
