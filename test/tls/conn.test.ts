// The Conn API on TLS, as on TCP: many flushes in one turn (TLSWrap takes one write at a time), a large echo
// with backpressure both ways, and close() after writes delivering every byte before close_notify and FIN.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import tls from 'node:tls';
import type { Conn } from 'netloom';
import { serveInline } from '../helpers.ts';
import { TestPki } from './certs.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('conn', ['conn.test']);
const TLS = { cert: cert.cert, key: cert.key };

/** Connects, sends `payload` (then half-closes), and collects everything until the server closes. */
function exchange(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'conn.test', ca: pki.ca.cert }, () => {
      s.end(payload);
    });
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
}

test('twenty flushes in one turn, then close(): every byte arrives in order, then the end', async (t) => {
  const { engine, port } = await serveInline(
    {
      onTraffic(c: Conn) {
        c.next();
        for (let i = 0; i < 20; i++) {
          c.write(Buffer.alloc(16 * 1024, 65 + i));
          c.flush(); // each flush a write of its own while the previous one may still be in TLSWrap
        }
        c.close();
      },
    },
    { tls: TLS },
  );
  t.after(() => engine.stop());
  const got = await exchange(port, Buffer.from('go'));
  assert.equal(got.length, 20 * 16 * 1024);
  for (let i = 0; i < 20; i++) assert.equal(got[i * 16 * 1024 + 100], 65 + i, `block ${i} in place`);
});

test('a 4 MiB echo with backpressure both ways (high-water mark 64 KiB) is byte-exact', async (t) => {
  const { engine, port } = await serveInline(
    {
      onTraffic(c: Conn) {
        c.write(c.next());
      },
      onEof(c: Conn) {
        c.close();
      },
    },
    { tls: TLS, highWaterMark: 64 * 1024, lowWaterMark: 16 * 1024 },
  );
  t.after(() => engine.stop());
  const payload = randomBytes(4 * 1024 * 1024);
  const got = await exchange(port, payload);
  assert.equal(got.length, payload.length);
  assert.equal(
    createHash('sha256').update(got).digest('hex'),
    createHash('sha256').update(payload).digest('hex'),
  );
});
