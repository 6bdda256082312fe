// engine.stop() closes the handshakes of the loop's current acceptor only (EventLoop.stop -> this.tls.close()).
// Handshakes that began before an engine.updateTls() live on the retired acceptor: they survive the stop and
// are still served after it — a client finishing its handshake after stop() resolved gets a working
// connection on an engine that says it is stopped.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import tls from 'node:tls';
import { serveInline } from '../../helpers.ts';
import { TestPki } from '../certs.ts';
import { sleep } from '../support.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('stop', ['stop.test']);

test('stop() closes handshakes in progress, including those begun before updateTls()', async () => {
  const opts = { cert: cert.cert, key: cert.key, handshakeTimeout: 5000 };
  const { engine, port } = await serveInline(
    {
      onTraffic(c) {
        c.next();
        c.write('served\n');
      },
    },
    { tls: opts },
  );
  // A TCP connection whose TLS client only starts after a while (accepted now, ClientHello later).
  const raw = net.connect(port, '127.0.0.1');
  await new Promise((r) => raw.once('connect', r));
  await sleep(100);
  if (process.env.NO_UPDATE === undefined) await engine.updateTls(opts);
  await engine.stop();
  const outcome = await new Promise<string>((resolve) => {
    const s = tls.connect({ socket: raw, servername: 'stop.test', ca: pki.ca.cert }, () => s.write('hi'));
    s.on('data', (d: Buffer) => {
      s.destroy();
      resolve(`answered after stop: ${d.toString().trim()}`);
    });
    s.on('error', () => resolve('closed'));
    s.on('close', () => resolve('closed'));
    setTimeout(() => {
      s.destroy();
      resolve('still open 2 s after stop');
    }, 2000);
  });
  raw.destroy();
  assert.equal(outcome, 'closed');
});
