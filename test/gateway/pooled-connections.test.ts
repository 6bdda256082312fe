// Issue 11, item 8: a pooled keep-alive connection the upstream closed (its FIN racing our request) is not a
// 502 for idempotent requests: they go again on a fresh connection, without counting against the target or
// using up the retry. A non-idempotent request is not sent twice. `Keep-Alive: timeout=N` is honoured, and
// the default idle timeout is below common upstream keep-alive timeouts.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { validateConfig } from 'netloom/gateway';
import { admin, type SnapshotView } from './fixtures/test-harness.ts';
import {
  echoHandler,
  gatewayConfig,
  httpUpstream,
  rawUpstream,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

/** A raw upstream that answers the first request on each connection and closes on the next one. */
interface StaleUpstream {
  address: string;
  connections: number;
  /** Requests that reached it (answered or not). */
  requests: number;
  answered: number;
  close(): Promise<void>;
}

/**
 * Answers the first request of each connection (`Content-Length`, keep-alive, no `Connection: close`) after
 * `delayMs`, then ends (or resets) the connection when a second request arrives on it, answering nothing: a
 * keep-alive close racing a request. With `acceptOnce`, it stops listening after its first connection.
 */
async function staleUpstream(
  options: { reset?: boolean; delayMs?: number; acceptOnce?: boolean; name?: string } = {},
): Promise<StaleUpstream> {
  const sockets = new Set<net.Socket>();
  const body = options.name ?? 'ok';
  const server = net.createServer((socket) => {
    up.connections++;
    if (options.acceptOnce) server.close();
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let seen = 0;
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.subarray(end + 4 + length);
        up.requests++;
        if (++seen === 1) {
          setTimeout(() => {
            up.answered++;
            const headOnly = head.startsWith('HEAD ');
            socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${headOnly ? '' : body}`);
          }, options.delayMs ?? 0);
        } else if (options.reset) {
          socket.resetAndDestroy();
          return;
        } else {
          socket.end();
          return;
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const up: StaleUpstream = {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    connections: 0,
    requests: 0,
    answered: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return up;
}

async function ejectedOf(adminPort: number, after: number): Promise<boolean[]> {
  let loops: (SnapshotView & { at: number })[] = [];
  await waitUntil(async () => {
    loops = (await admin<{ loops: (SnapshotView & { at: number })[] }>(adminPort, '/upstreams')).json.loops;
    return loops.length === 1 && loops[0]!.at > after;
  }, 3000);
  return loops[0]!.upstreams.u!.map((x) => x.ejected);
}

for (const reset of [false, true]) {
  test(`idempotent requests on a pooled connection the upstream ${reset ? 'reset' : 'closed (FIN)'}: 200 on a fresh one, with retries 0, not counted against the target`, async (t) => {
    const up = await staleUpstream({ reset });
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig(
        {
          u: upstreamOf([up.address], { retries: 0, passive: { consecutiveFailures: 1, ejectTime: 30_000 } }),
        },
        [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
        { admin: { address: '127.0.0.1:0' } },
      ),
    );
    t.after(() => gw.stop());
    const started = Date.now();
    const got: string[] = [];
    for (const method of ['GET', 'GET', 'HEAD', 'GET', 'PUT', 'DELETE', 'OPTIONS', 'GET']) {
      // An explicit empty body (node:http would chunk an empty PUT, which is a body).
      const r = await send(gw.port, '/x', { method, headers: { 'content-length': '0' } });
      got.push(`${method} ${r.status}`);
    }
    assert.deepEqual(got, [
      'GET 200',
      'GET 200',
      'HEAD 200',
      'GET 200',
      'PUT 200',
      'DELETE 200',
      'OPTIONS 200',
      'GET 200',
    ]);
    // The first on a fresh connection, then each one twice: closed on the reused one, answered on a new one.
    assert.equal(up.requests, 15);
    assert.equal(up.connections, 8);
    assert.deepEqual(await ejectedOf(gw.gateway.admin!.port, started), [false]);
  });
}

test('a POST on a pooled connection the upstream closed is not sent again: 502, the upstream saw it once', async (t) => {
  const up = await staleUpstream();
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [{ name: 'all', match: { path: '/' }, upstream: 'u' }]),
  );
  t.after(() => gw.stop());
  assert.equal((await send(gw.port, '/x', { method: 'POST', body: 'one' })).status, 200);
  const second = await send(gw.port, '/x', { method: 'POST', body: 'two' });
  assert.equal(second.status, 502);
  assert.equal((JSON.parse(second.text) as { error: string }).error, 'upstream connection failed');
  assert.equal(up.requests, 2, 'the POST reached the upstream once and was not retried');
  assert.equal(up.connections, 1);
  // A POST without a body is no more idempotent.
  const empty = { method: 'POST', headers: { 'content-length': '0' } };
  assert.equal((await send(gw.port, '/x', empty)).status, 200);
  assert.equal((await send(gw.port, '/x', empty)).status, 502);
  assert.equal(up.requests, 4);
  assert.equal(up.connections, 2);
});

test('stale POSTs (502, not retried) do not count against the target either', async (t) => {
  const up = await staleUpstream({ delayMs: 100 });
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig(
      { u: upstreamOf([up.address], { passive: { consecutiveFailures: 3, ejectTime: 30_000 } }) },
      [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
      { admin: { address: '127.0.0.1:0' } },
    ),
  );
  t.after(() => gw.stop());
  // Three connections in the pool, each answered once...
  const first = await Promise.all([1, 2, 3].map(() => send(gw.port, '/x', { method: 'POST', body: 'a' })));
  assert.deepEqual(
    first.map((r) => r.status),
    [200, 200, 200],
  );
  assert.equal(up.connections, 3);
  // ...then each reused by a POST the upstream closes on: three stale connections in a row.
  const started = Date.now();
  const stale: number[] = [];
  for (let i = 0; i < 3; i++) stale.push((await send(gw.port, '/x', { method: 'POST', body: 'b' })).status);
  assert.deepEqual(stale, [502, 502, 502]);
  assert.deepEqual(await ejectedOf(gw.gateway.admin!.port, started), [false]);
});

test('a stale connection does not use up the retry: a GET whose fresh connection then fails goes to the other target', async (t) => {
  // a: answers once on its one connection, closes it on the next request, and accepts no new connection.
  const a = await staleUpstream({ acceptOnce: true, name: 'a' });
  t.after(() => a.close());
  const b = await httpUpstream(echoHandler('b'));
  t.after(() => b.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([a.address, b.address], { retries: 1 }) }, [
      { name: 'all', match: { path: '/' }, upstream: 'u' },
    ]),
  );
  t.after(() => gw.stop());
  const first = await send(gw.port, '/x');
  const second = await send(gw.port, '/x');
  assert.deepEqual([first.status, second.status], [200, 200]);
  assert.equal(a.answered, 1, 'one of the first two went to a');
  // The next one that picks a takes its pooled connection (closed on it), dials a fresh one (refused), and
  // still has its one retry for b.
  const replies: number[] = [];
  for (let i = 0; i < 2; i++) replies.push((await send(gw.port, '/x')).status);
  assert.equal(a.requests, 2, 'a got the request on its reused connection');
  assert.equal(a.connections, 1);
  assert.deepEqual(replies, [200, 200]);
});

test('Keep-Alive: timeout=1 from the upstream: the pool closes the idle connection before 1 s', async (t) => {
  const ends: number[] = [];
  let answeredAt = 0;
  const watched = new WeakSet<net.Socket>();
  const up = await rawUpstream((_head, _body, socket) => {
    if (!watched.has(socket)) {
      watched.add(socket);
      socket.on('end', () => ends.push(Date.now() - answeredAt));
    }
    answeredAt = Date.now();
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=1\r\n\r\nok');
  });
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [{ name: 'all', match: { path: '/' }, upstream: 'u' }]),
  );
  t.after(() => gw.stop());
  assert.equal((await send(gw.port, '/x')).status, 200);
  // Reused at once: an idle connection well within its keep-alive time.
  assert.equal((await send(gw.port, '/x')).status, 200);
  assert.equal(up.connections, 1);
  await sleep(1100);
  assert.equal(ends.length, 1, 'the gateway closed the idle connection');
  assert.ok(ends[0]! < 950, `closed ${ends[0]} ms after the last response`);
  assert.equal((await send(gw.port, '/x')).status, 200);
  assert.equal(up.connections, 2);
});

test('the default pool idle timeout is 4 s, below node:http keep-alive (5 s)', () => {
  const config = validateConfig(
    gatewayConfig({ u: upstreamOf(['127.0.0.1:1']) }, [{ name: 'all', match: { path: '/' }, upstream: 'u' }]),
  );
  assert.equal(config.upstreams.u!.pool.idleTimeout, 4000);
});
