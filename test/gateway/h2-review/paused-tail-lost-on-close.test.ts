// A response received whole from an h2 upstream, but still queued in the gateway because the downstream reads
// slowly (the stream is paused), must not be lost when the upstream then closes its connection (GOAWAY and
// FIN after its last stream, as a server shutting down does): the upstream finished its part.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test } from 'node:test';
import { gatewayConfig, startTestGateway } from '../support.ts';
import { frame, rawH2Upstream, T, withTimeout } from './helpers.ts';

const BODY = 400_000;

test('the queued tail of a complete response survives the upstream closing its connection', async (t) => {
  const up = await rawH2Upstream((c, f) => {
    if (f.type !== T.HEADERS) return;
    c.headers(f.stream, [[':status', '200']], false);
    const body = Buffer.alloc(BODY, 0x62);
    for (let p = 0; p < BODY; p += 16_384)
      c.data(f.stream, body.subarray(p, Math.min(BODY, p + 16_384)), p + 16_384 >= BODY);
    const g = Buffer.alloc(8);
    g.writeUInt32BE(f.stream, 0);
    c.send(frame(T.GOAWAY, 0, 0, g));
    c.socket.end();
  });
  const gw = await startTestGateway(
    gatewayConfig({ h2: { targets: [{ address: `127.0.0.1:${up.port}` }], protocol: 'http2' } }, [
      { name: 'all', match: { path: '/' }, upstream: 'h2' },
    ]),
  );
  const client = http2.connect(gw.url, { settings: { initialWindowSize: 65535 } });
  client.on('error', () => {});
  t.after(async () => {
    client.close();
    await gw.stop();
    await up.close();
  });
  const got = new Promise<{ length: number; error?: string }>((resolve) => {
    const req = client.request({ ':path': '/big' });
    let length = 0;
    req.pause();
    setTimeout(() => {
      req.on('data', (d: Buffer) => (length += d.length));
      req.resume();
    }, 700);
    req.on('end', () => resolve({ length }));
    req.on('error', (e: Error) => resolve({ length, error: e.message }));
    req.end();
  });
  const r = await withTimeout(got, 5000, 'the response');
  assert.deepEqual(r, { length: BODY });
});
