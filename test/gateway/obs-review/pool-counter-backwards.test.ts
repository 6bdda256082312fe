// Review of the gateway metrics: netloom_gateway_pool_events_total is a counter, but each loop *sets* it
// every second from its target's pool statistics. A target a reload removes and a later reload brings
// back gets a new pool (the registry closes the old one), whose counts start at 0, under the same labels:
// the counter goes backwards between two scrapes.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { parseExposition } from '../../fixtures/prometheus.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';

test('pool_events_total never decreases when a target leaves and comes back', async (t) => {
  const a = await httpUpstream((_req, res) => res.end('a'));
  const b = await httpUpstream((_req, res) => res.end('b'));
  t.after(() => Promise.all([a.close(), b.close()]));
  const both = gatewayConfig(
    { app: upstreamOf([a.address, b.address], { balance: 'round_robin' }) },
    [{ name: 'r', match: { path: '/' }, upstream: 'app' }],
    { admin: { address: '127.0.0.1:0', token: TOKEN } },
  );
  const gw = await startTestGateway(both);
  t.after(() => gw.stop());
  const scrape = async () => {
    const r = await send(gw.gateway.admin!.port, '/metrics', {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    return parseExposition(r.text);
  };
  const created = `netloom_gateway_pool_events_total{upstream="app",target="${b.address}",event="created"}`;
  const reused = `netloom_gateway_pool_events_total{upstream="app",target="${b.address}",event="reused"}`;
  // Several connections to each target (concurrent requests), reused by the later ones.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  t.after(() => agent.destroy());
  for (let round = 0; round < 4; round++)
    await Promise.all(Array.from({ length: 8 }, () => send(gw.port, '/x', { agent })));
  await sleep(1200); // the gauges and pool counts are set every second
  const before = await scrape();
  assert.ok((before.get(created) ?? 0) >= 2, `created ${before.get(created)}`);
  assert.ok((before.get(reused) ?? 0) >= 1, `reused ${before.get(reused)}`);

  // Target b leaves, then comes back: one new connection to it.
  await gw.source.set(
    gatewayConfig(
      { app: upstreamOf([a.address], { balance: 'round_robin' }) },
      [{ name: 'r', match: { path: '/' }, upstream: 'app' }],
      { admin: { address: '127.0.0.1:0', token: TOKEN } },
    ),
  );
  assert.equal((await gw.gateway.reload()).ok, true);
  await gw.source.set(both);
  assert.equal((await gw.gateway.reload()).ok, true);
  for (let i = 0; i < 2; i++) await send(gw.port, '/y');
  await sleep(1200);
  const after = await scrape();
  assert.ok(
    (after.get(created) ?? 0) >= before.get(created)! && (after.get(reused) ?? 0) >= before.get(reused)!,
    `a counter went backwards: created ${before.get(created)} -> ${after.get(created)}, reused ${before.get(reused)} -> ${after.get(reused)}`,
  );
});
