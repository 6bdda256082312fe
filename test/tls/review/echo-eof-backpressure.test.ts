// An echo server (onEof: close) over TLS, a client that uploads 200 KB then close_notify and reads its echo
// slowly: backpressure pauses reading in the middle of a TCP read, the records after the pause are held
// (6be52c0), the close_notify decrypted in that same read becomes onEof at once, close() drops what was held.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, test } from 'node:test';
import tls from 'node:tls';
import type { Conn } from 'netloom';
import { serveInline } from '../../helpers.ts';
import { TestPki } from '../certs.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('b', ['b.test']);

const echo = {
  onTraffic(c: Conn) {
    c.write(c.next());
  },
  onEof(c: Conn) {
    c.close();
  },
};

function slowReader(s: net.Socket, done: (b: Buffer) => void): void {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => {
    chunks.push(d);
    s.pause();
    setTimeout(() => s.resume(), 2);
  });
  s.on('error', () => {});
  s.on('close', () => done(Buffer.concat(chunks)));
}

for (const secure of [true, false]) {
  test(`${secure ? 'TLS' : 'TCP (control)'}: 200 KB upload + end, echoed to a slow reader, every byte back`, async (t) => {
    const { engine, port } = await serveInline(echo, {
      highWaterMark: 1024,
      lowWaterMark: 512,
      ...(secure ? { tls: { cert: cert.cert, key: cert.key } } : {}),
    });
    t.after(() => engine.stop());
    // Five connections: whether the close_notify shares a read with records held after a pause is timing.
    for (let trial = 0; trial < 5; trial++) {
      const payload = randomBytes(200_000);
      const got = await new Promise<Buffer>((resolve) => {
        const s = secure
          ? tls.connect({ port, host: '127.0.0.1', servername: 'b.test', ca: pki.ca.cert }, () =>
              s.end(payload),
            )
          : net.connect(port, '127.0.0.1', () => s.end(payload));
        slowReader(s, resolve);
        setTimeout(() => s.destroy(), 4000);
      });
      assert.equal(got.length, payload.length, `trial ${trial}: bytes echoed`);
      assert.ok(got.equals(payload), `trial ${trial}: bytes in order`);
    }
  });
}
