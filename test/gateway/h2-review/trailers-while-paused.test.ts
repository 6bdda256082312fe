// Upstream trailers that arrive while the response is paused (the downstream reads slower than the upstream
// sends) must still reach the client.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import { gatewayConfig, sleep, startTestGateway } from '../support.ts';
import { h2Upstream, withTimeout } from './helpers.ts';

async function setup(t: import('node:test').TestContext, BODY: number) {
  const up = await h2Upstream((stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-t': 'yes' }));
    stream.end(Buffer.alloc(BODY, 0x61));
  });
  const gw = await startTestGateway(
    gatewayConfig({ h2: { targets: [{ address: `127.0.0.1:${up.port}` }], protocol: 'http2' } }, [
      { name: 'all', match: { path: '/' }, upstream: 'h2' },
    ]),
  );
  t.after(async () => {
    await gw.stop();
    await up.close();
  });
  return { gw, BODY };
}

test('HTTP/2 downstream, paused reader: upstream trailers still arrive', async (t) => {
  const { gw, BODY } = await setup(t, 400_000);
  const client = http2.connect(gw.url, { settings: { initialWindowSize: 65535 } });
  t.after(() => client.close());
  const got = new Promise<{ length: number; trailers: http2.IncomingHttpHeaders | null }>(
    (resolve, reject) => {
      const req = client.request({ ':path': '/big' });
      let length = 0;
      let trailers: http2.IncomingHttpHeaders | null = null;
      req.on('trailers', (h) => (trailers = h));
      req.pause();
      setTimeout(() => {
        req.on('data', (d: Buffer) => (length += d.length));
        req.resume();
      }, 700);
      req.on('end', () => resolve({ length, trailers }));
      req.on('error', reject);
      req.end();
    },
  );
  const r = await withTimeout(got, 5000, 'the response');
  assert.equal(r.length, BODY);
  assert.equal(r.trailers?.['x-t'], 'yes', 'the upstream trailers');
});

// Timing-dependent (the stream must be paused when the trailers arrive): fails in most runs, not all.
test('HTTP/1.1 downstream, slow reader: upstream trailers still arrive (chunked)', async (t) => {
  const { gw } = await setup(t, 12_000_000);
  const socket = net.connect(gw.port, '127.0.0.1');
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  await new Promise<void>((r) => socket.once('connect', () => r()));
  socket.pause();
  socket.write('GET /big HTTP/1.1\r\nhost: x\r\nte: trailers\r\nconnection: close\r\n\r\n');
  await sleep(700);
  const chunks: Buffer[] = [];
  const done = new Promise<void>((r) => socket.on('end', () => r()));
  socket.on('data', (d: Buffer) => {
    chunks.push(d);
    // A slow reader all along: the gateway stays paused on the upstream most of the time.
    socket.pause();
    setTimeout(() => socket.resume(), 2);
  });
  socket.resume();
  await withTimeout(done, 12000, 'the response');
  const text = Buffer.concat(chunks).toString('latin1');
  assert.match(text.slice(0, 200), /^HTTP\/1.1 200/);
  assert.match(text.slice(-200), /\r\n0\r\n[\s\S]*x-t: yes\r\n/i, 'the trailer after the last chunk');
});
