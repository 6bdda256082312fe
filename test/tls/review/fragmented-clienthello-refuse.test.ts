// A ClientHello split over several TLS records is legal (RFC 8446 §5.1: handshake messages may be
// fragmented; OpenSSL reassembles them). The peek parser reads only the first record and, when the
// server_name extension is not complete in it, reports no name; with unknownServername: 'refuse' the
// connection is then dropped before OpenSSL sees it, although the client did send a known name.
// A proxy between node:tls and the engine re-frames the client's first record into 64-byte records.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import tls from 'node:tls';
import type { Conn } from 'netloom';
import { serveInline } from '../../helpers.ts';
import { TestPki } from '../certs.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('frag', ['frag.test']);

/** A TCP proxy to `port` that splits the client's first TLS record into records of `size` bytes. */
async function fragmentingProxy(port: number, size: number) {
  const server = net.createServer((client) => {
    const up = net.connect(port, '127.0.0.1');
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
    up.pipe(client);
    let head = Buffer.alloc(0);
    let done = false;
    client.on('data', (d: Buffer) => {
      if (done) return void up.write(d);
      head = Buffer.concat([head, d]);
      if (head.length < 5) return;
      const len = head.readUInt16BE(3);
      if (head.length < 5 + len) return;
      done = true;
      const body = head.subarray(5, 5 + len);
      for (let p = 0; p < body.length; p += size) {
        const frag = body.subarray(p, Math.min(p + size, body.length));
        const hdr = Buffer.from([head[0]!, head[1]!, head[2]!, frag.length >> 8, frag.length & 0xff]);
        up.write(Buffer.concat([hdr, frag]));
      }
      up.write(head.subarray(5 + len));
    });
    client.on('end', () => up.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

function handshake(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'frag.test', ca: pki.ca.cert }, () => {
      s.write('hi');
    });
    s.on('data', (d: Buffer) => {
      s.destroy();
      resolve(d.toString());
    });
    s.on('error', reject);
  });
}

for (const unknownServername of ['default', 'refuse'] as const) {
  test(`unknownServername ${unknownServername}: a ClientHello in 64-byte records naming a known name is served`, async (t) => {
    const { engine, port } = await serveInline(
      {
        onTraffic(c: Conn) {
          c.next();
          c.write(`sni=${c.tls?.servername}`);
        },
      },
      { tls: { certificates: { 'frag.test': { cert: cert.cert, key: cert.key } }, unknownServername } },
    );
    t.after(() => engine.stop());
    const proxy = await fragmentingProxy(port, 64);
    t.after(() => proxy.close());
    assert.equal(await handshake(proxy.port), 'sni=frag.test');
  });
}
