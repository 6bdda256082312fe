// Review of the span export: a collector that takes an export and never answers holds the shipper's worker
// (a fetch open for `timeout`, then a retry for as long again), and gateway.stop() waits for the worker to
// exit: spanShipper.stop(2000) only ends it by terminate() at its deadline + 5 s. A gateway asked to stop
// within 50 ms takes about 7 s.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf, waitUntil } from '../support.ts';

test('gateway.stop() is not held for seconds by a collector that does not answer', async (t) => {
  let exports = 0;
  const sockets = new Set<net.Socket>();
  const collector = http.createServer(() => {
    exports++; // never answered
  });
  collector.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => collector.close(() => resolve()));
  });
  const endpoint = `http://127.0.0.1:${(collector.address() as net.AddressInfo).port}/v1/traces`;
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ app: upstreamOf([up.address]) }, [{ name: 'a', match: { path: '/' }, upstream: 'app' }], {
      observability: { tracing: { endpoint, batch: { maxDelay: 10 } } },
    }),
  );
  let stopped = false;
  t.after(() => (stopped ? undefined : gw.stop(0)));
  assert.equal((await send(gw.port, '/x')).status, 200);
  await waitUntil(() => exports >= 1, 3000, 'the export reaching the collector');
  const t0 = performance.now();
  await gw.stop(50);
  stopped = true;
  const took = performance.now() - t0;
  assert.ok(took < 3000, `gateway.stop(50) took ${Math.round(took)} ms`);
});
