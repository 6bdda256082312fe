// Issue 11, item 14: the pool's wait queue is bounded (maxQueue): past it a request is answered 503 at once
// with a JSON error, and the queued ones are served in order as the connection frees up. Waiters whose
// client left give their place back.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import {
  gatewayConfig,
  httpUpstream,
  type Reply,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

/** An upstream answering every request after `ms`, its body the request's URL; counts requests in flight. */
async function slowUpstream(t: { after(fn: () => unknown): void }, ms: number) {
  const state = { inFlight: 0, order: [] as string[] };
  const up = await httpUpstream((req, res) => {
    state.inFlight++;
    state.order.push(req.url ?? '');
    setTimeout(() => {
      state.inFlight--;
      res.writeHead(200, { 'content-length': Buffer.byteLength(req.url ?? '') });
      res.end(req.url);
    }, ms);
  });
  t.after(() => up.close());
  return Object.assign(up, { state });
}

function timed(port: number, path: string): Promise<Reply & { ms: number }> {
  const started = Date.now();
  return send(port, path).then((r) => ({ ...r, ms: Date.now() - started }));
}

test('maxConnections 1, maxQueue 2, a slow upstream: the 4th concurrent request gets 503 at once; the queued are served', async (t) => {
  const up = await slowUpstream(t, 300);
  const gw = await startTestGateway(
    gatewayConfig(
      { u: upstreamOf([up.address], { pool: { maxConnections: 1, maxQueue: 2, queueTimeout: 5000 } }) },
      [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
    ),
  );
  t.after(() => gw.stop());
  const first = timed(gw.port, '/1');
  await waitUntil(() => up.state.inFlight === 1, 1000, 'the first request upstream');
  const second = timed(gw.port, '/2');
  const third = timed(gw.port, '/3');
  await sleep(50);
  const fourth = await timed(gw.port, '/4');
  assert.equal(fourth.status, 503);
  assert.ok(fourth.ms < 150, `the overflow took ${fourth.ms} ms`);
  assert.equal(fourth.headers['content-type']?.startsWith('application/json'), true);
  assert.deepEqual(JSON.parse(fourth.text), {
    error: 'upstream connection pool exhausted',
    status: 503,
    upstream: 'u',
    route: 'all',
  });
  const served = await Promise.all([first, second, third]);
  assert.deepEqual(
    served.map((r) => `${r.status} ${r.text}`),
    ['200 /1', '200 /2', '200 /3'],
  );
  assert.deepEqual(up.state.order, ['/1', '/2', '/3'], 'the queue is served in order, /4 never went up');
  assert.equal(up.connections, 1);
});

test('maxQueue 0: a second concurrent request is refused at once', async (t) => {
  const up = await slowUpstream(t, 300);
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address], { pool: { maxConnections: 1, maxQueue: 0 } }) }, [
      { name: 'all', match: { path: '/' }, upstream: 'u' },
    ]),
  );
  t.after(() => gw.stop());
  const first = timed(gw.port, '/1');
  await waitUntil(() => up.state.inFlight === 1, 1000, 'the first request upstream');
  const second = await timed(gw.port, '/2');
  assert.equal(second.status, 503);
  assert.ok(second.ms < 150, `took ${second.ms} ms`);
  assert.equal((await first).status, 200);
  assert.deepEqual(up.state.order, ['/1']);
});

test('a waiter whose client left frees its place in the queue: the next request waits instead of a 503', async (t) => {
  const up = await slowUpstream(t, 600);
  const gw = await startTestGateway(
    gatewayConfig(
      { u: upstreamOf([up.address], { pool: { maxConnections: 1, maxQueue: 2, queueTimeout: 5000 } }) },
      [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
    ),
  );
  t.after(() => gw.stop());
  const first = timed(gw.port, '/1');
  await waitUntil(() => up.state.inFlight === 1, 1000, 'the first request upstream');
  const second = timed(gw.port, '/2');
  await sleep(30);
  // A third client queues, then goes away (a reset: gone for good).
  const leaver = net.connect(gw.port, '127.0.0.1');
  leaver.on('error', () => {});
  await new Promise<void>((resolve) => leaver.on('connect', () => resolve()));
  leaver.write('GET /3 HTTP/1.1\r\nHost: t\r\n\r\n');
  await sleep(50);
  leaver.resetAndDestroy();
  await sleep(150);
  // One real waiter (/2): /4 may take the second place.
  const fourth = await timed(gw.port, '/4');
  assert.equal(fourth.status, 200, `/4: ${fourth.status} ${fourth.text}`);
  assert.deepEqual(
    (await Promise.all([first, second])).map((r) => r.status),
    [200, 200],
  );
  assert.deepEqual(up.state.order, ['/1', '/2', '/4']);
});
