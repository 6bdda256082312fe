// A TLS client sends two requests and close_notify together; the handler pauses after the first. The
// second request is decrypted in the same read (held until resume, 6be52c0), and so is close_notify, which
// Node turns into 'end' at once: onEof runs while paused, before onTraffic has seen the held bytes, and the
// close() a handler does at EOF discards them. On plain TCP (and on the `data` path) the FIN waits behind
// the bytes: onTraffic sees them first.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import tls from 'node:tls';
import type { Conn } from 'netloom';
import { serveInline } from '../../helpers.ts';
import { TestPki } from '../certs.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('h', ['h.test']);

/** A proxy that holds client->server bytes (and the FIN) for `holdMs`, then forwards them in one write. */
function coalescingProxy(target: number, holdMs: number): Promise<{ port: number; close(): void }> {
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const up = net.connect({ port: target, host: '127.0.0.1', allowHalfOpen: true });
    let held: Buffer[] = [];
    let scheduled = false;
    let ended = false;
    const schedule = () => {
      if (scheduled) return;
      scheduled = true;
      setTimeout(flush, holdMs);
    };
    const flush = () => {
      scheduled = false;
      if (held.length) up.write(Buffer.concat(held));
      held = [];
      if (ended) up.end();
    };
    client.on('data', (d) => {
      held.push(d);
      schedule();
    });
    client.on('end', () => {
      ended = true;
      schedule();
    });
    up.on('data', (d) => client.write(d));
    up.on('end', () => client.end());
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ port: (server.address() as net.AddressInfo).port, close: () => server.close() }),
    ),
  );
}

test('TLS: bytes held while paused reach onTraffic before onEof (request + close_notify together)', async (t) => {
  const events: string[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const { engine, port } = await serveInline(
    {
      onTraffic(c: Conn) {
        const text = c.next().toString('latin1');
        events.push(`traffic:${text}${c.reading ? '' : '(paused)'}`);
        if (text.startsWith('first')) {
          c.pause(); // e.g. waiting for an upstream before taking the next request
          setTimeout(() => c.resume(), 150);
        }
      },
      onEof(c: Conn) {
        events.push(`eof${c.reading ? '' : '(paused)'}`);
        c.close();
      },
      onClose() {
        done();
      },
    },
    { tls: { cert: cert.cert, key: cert.key } },
  );
  const proxy = await coalescingProxy(port, 80);
  t.after(() => {
    proxy.close();
    return engine.stop();
  });
  const s = tls.connect(
    { port: proxy.port, host: '127.0.0.1', servername: 'h.test', ca: pki.ca.cert },
    () => {
      s.write('first;');
      s.write('second;');
      s.end(); // close_notify + FIN, forwarded with both records in one segment
    },
  );
  s.on('error', () => {});
  s.resume();
  await Promise.race([finished, new Promise((r) => setTimeout(r, 3000))]);
  s.destroy();
  assert.deepEqual(events, ['traffic:first;', 'traffic:second;', 'eof']);
});

test('control, plain TCP: the same exchange', async (t) => {
  const events: string[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const { engine, port } = await serveInline({
    onTraffic(c: Conn) {
      const text = c.next().toString('latin1');
      events.push(`traffic:${text}`);
      if (text.startsWith('first')) {
        c.pause();
        setTimeout(() => c.resume(), 150);
      }
    },
    onEof(c: Conn) {
      events.push('eof');
      c.close();
    },
    onClose() {
      done();
    },
  });
  t.after(() => engine.stop());
  const s = net.connect(port, '127.0.0.1', () => {
    s.write('first;');
    setTimeout(() => s.end('second;'), 30); // arrives while paused: read (with the FIN) at resume
  });
  s.on('error', () => {});
  s.resume();
  await Promise.race([finished, new Promise((r) => setTimeout(r, 3000))]);
  s.destroy();
  assert.deepEqual(events, ['traffic:first;', 'traffic:second;', 'eof']);
});
