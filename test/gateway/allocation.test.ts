// A performance promise as a test (fasthttp's allocation_test in spirit): once warm, a proxied keep-alive
// GET takes no new arena slab, and costs two socket writes (the request up, the response down), however
// many requests go through.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { gatewayConfig, httpUpstream, startTestGateway, upstreamOf } from './support.ts';

/** A keep-alive client on one connection: sends a GET, waits for its whole response (Content-Length). */
function client(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  let buf = '';
  let waiting: ((text: string) => void) | null = null;
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    const end = buf.indexOf('\r\n\r\n');
    if (end === -1 || waiting === null) return;
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
    if (buf.length < end + 4 + length) return;
    const text = buf.slice(0, end + 4 + length);
    buf = buf.slice(end + 4 + length);
    const w = waiting;
    waiting = null;
    w(text);
  });
  return {
    get(path: string): Promise<string> {
      return new Promise((resolve) => {
        waiting = resolve;
        socket.write(`GET ${path} HTTP/1.1\r\nHost: app\r\n\r\n`);
      });
    },
    close: () => socket.destroy(),
  };
}

test('a proxied GET, once warm: no new arena slab and two socket writes per request', async (t) => {
  const up = await httpUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 5 });
    res.end('hello');
  });
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ app: upstreamOf([up.address]) }, [
      {
        name: 'probe',
        match: { path: '/__probe', pathType: 'exact' },
        upstream: 'app',
        filters: [{ name: 'alloc-probe' }],
      },
      { name: 'app', match: { path: '/' }, upstream: 'app' },
    ]),
    { plugins: [new URL('./fixtures/alloc-probe.ts', import.meta.url)] },
  );
  t.after(() => gw.stop());
  const c = client(gw.port);
  t.after(() => c.close());
  const probe = async () => {
    const text = await c.get('/__probe');
    return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { allocated: number; writes: number };
  };
  for (let i = 0; i < 500; i++) assert.match(await c.get(`/warm/${i}`), /^HTTP\/1\.1 200 /);
  const before = await probe();
  const N = 2000;
  for (let i = 0; i < N; i++) {
    const text = await c.get(`/item/${i}?q=${i}`);
    if (!text.startsWith('HTTP/1.1 200 ') || !text.endsWith('hello')) assert.fail(`request ${i}: ${text}`);
  }
  const after = await probe();
  assert.equal(after.allocated - before.allocated, 0, 'arena slabs were created in the steady state');
  // The probe's own answer is one more write.
  assert.equal(after.writes - before.writes, 2 * N + 1, 'socket writes per proxied request');
  assert.equal(up.connections, 1, 'the upstream connection was reused');
});
