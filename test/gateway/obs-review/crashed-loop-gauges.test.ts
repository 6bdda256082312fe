// Review of the gateway metrics after a loop crash: the engine settles a crashed loop's own figures
// (settleCrashedLoop: its open connections count as closed), but the loop's row of the metrics memory keeps
// the gauges it last published. A loop that is not restarted (maxRestarts reached) leaves its pool
// connections and target health on /metrics for good: connections that died with its thread.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { parseExposition } from '../../fixtures/prometheus.ts';
import { gatewayConfig, send, sleep, startTestGateway, upstreamOf, waitUntil } from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';

test('a crashed loop that is not restarted takes its pool gauges with it', async (t) => {
  // An upstream that knows how many connections are open to it right now.
  const live = new Set<net.Socket>();
  const server = http.createServer({ keepAliveTimeout: 30_000 }, (_req, res) => res.end('ok'));
  server.on('connection', (s: net.Socket) => {
    live.add(s);
    s.on('close', () => live.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  t.after(() => {
    for (const s of live) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const config = gatewayConfig(
    { app: upstreamOf([address]) },
    [{ name: 'a', match: { path: '/' }, upstream: 'app' }],
    {
      listeners: [{ address: '127.0.0.1:0', loops: 2 }],
      admin: { address: '127.0.0.1:0', token: TOKEN },
    },
  );
  const gw = await startTestGateway(config, {
    handlerModule: new URL('../fixtures/targeted-crash-handler.ts', import.meta.url),
    engine: { maxRestarts: 0 },
  });
  t.after(() => gw.stop(200));
  const engine = gw.gateway.listeners[0]!;
  const openGauge = `netloom_gateway_pool_connections{upstream="app",target="${address}",state="open"}`;
  const scrape = async () =>
    parseExposition(
      (await send(gw.gateway.admin!.port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } }))
        .text,
    );
  // Pooled connections on both loops (each client connection lands on one of them).
  await waitUntil(
    async () => {
      await Promise.all(Array.from({ length: 8 }, () => send(gw.port, '/warm')));
      const loops = engine.stats().loops;
      return loops.every((l) => l.dialed > 0);
    },
    5000,
    'both loops dialing the upstream',
  );
  await sleep(1200);
  assert.equal((await scrape()).get(openGauge), live.size, 'the gauge agrees with the upstream before');
  // Loop 0 crashes; with maxRestarts 0 it stays down.
  let failed = false;
  engine.on('loopFailed', () => {
    failed = true;
  });
  for (let i = 0; i < 50 && !failed; i++) {
    await send(gw.port, '/crash/0').catch(() => undefined);
    await sleep(30);
  }
  assert.ok(failed, 'loop 0 crashed and was not restarted');
  await waitUntil(() => engine.stats().loops[0]!.open === 0, 2000, 'the engine settling loop 0');
  await sleep(1300);
  const after = await scrape();
  assert.equal(
    after.get(openGauge),
    live.size,
    `pool_connections{state="open"} ${after.get(openGauge)} while the upstream has ${live.size} open`,
  );
});
