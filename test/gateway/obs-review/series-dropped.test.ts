// Review of the metrics memory under the gateway: a series whose label values do not fit the directory
// entry (236 bytes of key), or that comes after the directory's 4,096 series are taken, is dropped, and
// its requests are counted nowhere. The drop itself is not on /metrics either (engine.metricsDropped has no
// family), so the scrape silently misses routes.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { parseExposition, promtool } from '../../fixtures/prometheus.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';

async function scrape(port: number): Promise<string> {
  const r = await send(port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200);
  return r.text;
}

test('a route with a long name (and domain) is counted in netloom_gateway_requests_total', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  // 120 characters each: a long but ordinary route name and domain (e.g. generated from an OpenAPI spec).
  const route = `orders-service.v2.${'customers-by-region-'.repeat(5)}`.padEnd(120, 'x');
  const domain = `tenant-${'a'.repeat(113)}`;
  const gw = await startTestGateway(
    gatewayConfig(
      { app: upstreamOf([up.address]) },
      [{ name: route, domain, match: { path: '/' }, upstream: 'app' }],
      {
        admin: { address: '127.0.0.1:0', token: TOKEN },
      },
    ),
  );
  t.after(() => gw.stop());
  for (let i = 0; i < 5; i++) assert.equal((await send(gw.port, '/a')).status, 200);
  await sleep(100);
  const text = await scrape(gw.gateway.admin!.port);
  assert.equal(promtool(text).status, 0);
  const m = parseExposition(text);
  const counted = m.get(
    `netloom_gateway_requests_total{route="${route}",domain="${domain}",upstream="app",status="2xx"}`,
  );
  assert.equal(
    counted,
    5,
    `requests of the route are not on /metrics (engine.metricsDropped = ${gw.gateway.listeners[0]!.metricsDropped})`,
  );
});

test('a gateway of 50 services with 10 targets each counts the requests of every route', async (t) => {
  // Ten upstream servers; every service balances over all ten (50 x 10 = 500 targets, 8 gauge series each).
  const servers = await Promise.all(
    Array.from({ length: 10 }, () => httpUpstream((_req, res) => res.end('ok'))),
  );
  t.after(() => Promise.all(servers.map((s) => s.close())));
  const n = 50;
  const upstreams: Record<string, Record<string, unknown>> = {};
  const routes: Record<string, unknown>[] = [];
  for (let i = 0; i < n; i++) {
    upstreams[`svc${i}`] = upstreamOf(servers.map((s) => s.address));
    routes.push({ name: `r${i}`, match: { path: `/r${i}/` }, upstream: `svc${i}` });
  }
  const gw = await startTestGateway(
    gatewayConfig(upstreams, routes, { admin: { address: '127.0.0.1:0', token: TOKEN } }),
  );
  t.after(() => gw.stop());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  t.after(() => agent.destroy());
  for (let i = 0; i < n; i += 10)
    await Promise.all(
      Array.from({ length: 10 }, (_, k) =>
        send(gw.port, `/r${i + k}/x`, { agent }).then((r) => assert.equal(r.status, 200)),
      ),
    );
  await sleep(100);
  const m = parseExposition(await scrape(gw.gateway.admin!.port));
  const missing: string[] = [];
  for (let i = 0; i < n; i++)
    if (
      m.get(
        `netloom_gateway_requests_total{route="r${i}",domain="default",upstream="svc${i}",status="2xx"}`,
      ) !== 1
    )
      missing.push(`r${i}`);
  assert.equal(
    missing.length,
    0,
    `${missing.length} of ${n} routes uncounted (first ${missing.slice(0, 3).join(', ')}); metricsDropped = ${gw.gateway.listeners[0]!.metricsDropped}`,
  );
});

test('series the metrics memory dropped are visible on /metrics', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  // A key longer than a directory entry holds (492 bytes): its series are dropped.
  const route = 'r'.repeat(500);
  const gw = await startTestGateway(
    gatewayConfig(
      { app: upstreamOf([up.address]) },
      [{ name: route, match: { path: '/' }, upstream: 'app' }],
      {
        admin: { address: '127.0.0.1:0', token: TOKEN },
      },
    ),
  );
  t.after(() => gw.stop());
  assert.equal((await send(gw.port, '/a')).status, 200);
  await sleep(100);
  const dropped = gw.gateway.listeners[0]!.metricsDropped;
  assert.ok(dropped > 0, 'the series were dropped');
  const text = await scrape(gw.gateway.admin!.port);
  assert.match(
    text,
    /^netloom_metrics_(series_)?dropped\S* [1-9]/m,
    `metricsDropped is ${dropped}; /metrics says nothing`,
  );
});
