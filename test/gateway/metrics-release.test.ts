// The gateway lets go of series whose names no version on a loop uses any more (SeriesLedger, LoopMetrics):
// a target a reload removed leaves /metrics while the one kept goes on counting; a route removed while a
// loop was down leaves /metrics once the restarted loop runs the version in force, and the routes kept
// continue their counts across the crash.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseExposition } from '../fixtures/prometheus.ts';
import {
  crashLoop,
  gatewayConfig,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

const TOKEN = 'metrics-release-admin-token-0123456789';

async function scrape(adminPort: number): Promise<Map<string, number>> {
  const r = await send(adminPort, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200);
  return parseExposition(r.text);
}

test('a target a reload removed leaves /metrics; the target kept goes on counting', async (t) => {
  const one = await httpUpstream((_req, res) => res.end('1'));
  const two = await httpUpstream((_req, res) => res.end('2'));
  t.after(() => Promise.all([one.close(), two.close()]));
  const config = (targets: string[]) =>
    gatewayConfig({ app: upstreamOf(targets) }, [{ name: 'a', match: { path: '/' }, upstream: 'app' }], {
      admin: { address: '127.0.0.1:0', token: TOKEN },
    });
  const gw = await startTestGateway(config([one.address, two.address]));
  t.after(() => gw.stop());
  const admin = gw.gateway.admin!.port;
  for (let i = 0; i < 20; i++) assert.equal((await send(gw.port, '/x')).status, 200);
  const created = (m: Map<string, number>, address: string) =>
    m.get(`netloom_gateway_pool_events_total{upstream="app",target="${address}",event="created"}`);
  await waitUntil(async () => (created(await scrape(admin), two.address) ?? 0) > 0, 3000, 'pool series');
  const before = await scrape(admin);
  const keptBefore = created(before, one.address)!;
  assert.ok(keptBefore > 0);
  await gw.source.set(config([one.address]));
  const r = await gw.gateway.reload();
  assert.ok(r.ok && r.changed, JSON.stringify(r));
  for (let i = 0; i < 5; i++) assert.equal((await send(gw.port, '/x')).text, '1');
  await sleep(1300); // the loops set their gauges (and let go of gone targets) every second
  const after = await scrape(admin);
  const ofTwo = [...after.keys()].filter((k) => k.includes(`target="${two.address}"`));
  assert.deepEqual(ofTwo, [], 'no series of the removed target');
  assert.ok(created(after, one.address)! >= keptBefore, 'the kept target counts on from where it was');
  assert.equal(after.get(`netloom_gateway_target_healthy_loops{upstream="app",target="${one.address}"}`), 1);
});

test('a route a crashed loop was draining leaves /metrics once the loop is back; kept routes count on', async (t) => {
  // /c/slow is answered after 3 s: requests of it hold the version that has route c on their loop.
  const up = await httpUpstream((req, res) => {
    if (req.url?.startsWith('/c/slow')) setTimeout(() => res.end('ok'), 3000);
    else res.end('ok');
  });
  t.after(() => up.close());
  const route = (name: string) => ({ name, match: { path: `/${name}` }, upstream: 'app' });
  const config = (routes: string[]) =>
    gatewayConfig({ app: upstreamOf([up.address]) }, routes.map(route), {
      listeners: [{ address: '127.0.0.1:0', loops: 2 }],
      admin: { address: '127.0.0.1:0', token: TOKEN },
    });
  const gw = await startTestGateway(config(['a', 'b']), {
    handlerModule: new URL('./fixtures/targeted-crash-handler.ts', import.meta.url),
  });
  t.after(() => gw.stop(200));
  const admin = gw.gateway.admin!.port;
  await gw.source.set(config(['a', 'c']));
  assert.ok((await gw.gateway.reload()).ok);
  // Both loops count requests of a and c (fresh connections spread over the two loops).
  for (let i = 0; i < 40; i++) {
    assert.equal((await send(gw.port, '/a')).status, 200);
    assert.equal((await send(gw.port, '/c')).status, 200);
  }
  const key = (name: string) =>
    `netloom_gateway_requests_total{route="${name}",domain="default",upstream="app",status="2xx"}`;
  await waitUntil(async () => (await scrape(admin)).get(key('c')) === 40, 2000, 'the c requests counted');
  // Slow requests of c on both loops (8 connections), then c is removed: each loop drains its version.
  const slow = Array.from({ length: 8 }, () => send(gw.port, '/c/slow').catch(() => undefined));
  await sleep(200);
  await gw.source.set(config(['a']));
  assert.ok((await gw.gateway.reload()).ok);
  // Loop 0 crashes while it drains; restarted, it boots with {a, b} and syncs to {a}: it never builds c
  // again, so only its sweep lets go of what its predecessor held for c.
  const engine = gw.gateway.listeners[0]!;
  let restarted = false;
  engine.on('loopRestart', () => {
    restarted = true;
  });
  await crashLoop(gw.port, 0); // once: see crashLoop
  await waitUntil(() => restarted, 5000, 'loop 0 coming back');
  await Promise.all(slow); // loop 1's slow requests end: its version with c closes too
  await waitUntil(
    async () => !(await scrape(admin)).has(key('c')),
    3000,
    'the series of route c leaving /metrics',
  ).catch(async (err) => {
    const m = await scrape(admin);
    throw new Error(`${(err as Error).message}; c still counts ${m.get(key('c'))}`);
  });
  const m = await scrape(admin);
  for (const k of m.keys()) assert.ok(!k.includes('route="c"') && !k.includes('route="b"'), k);
  assert.ok(m.get(key('a'))! >= 40, `route a kept its count across the crash: ${m.get(key('a'))}`);
});
