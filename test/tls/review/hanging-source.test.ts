// One CertificateSource.load that never settles makes that server name fail forever: the pending promise
// stays in CertificateStore.loading, so every later handshake for the name waits on it until its timeout,
// even after the source recovers (and reloadCertificates() does not clear it either).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import tls from 'node:tls';
import { serveInline } from '../../helpers.ts';
import { TestPki } from '../certs.ts';

const pki = new TestPki();
after(() => pki.cleanup());
pki.issue('hang.source.test', ['hang.source.test']);
process.env.NETLOOM_TEST_SOURCE_DIR = pki.dir;
const fallback = pki.issue('fallback', ['fallback.test']);

function handshake(port: number, name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: name, ca: pki.ca.cert }, () => {
      const cn = s.getPeerCertificate().subject.CN as string;
      s.destroy();
      resolve(cn);
    });
    s.on('error', reject);
  });
}

test('a source load that hangs once does not make its name fail for good', async (t) => {
  const { engine, port } = await serveInline(
    { onTraffic: (c) => void c.next() },
    {
      tls: {
        cert: fallback.cert,
        key: fallback.key,
        certificateSource: new URL('./hang-source.ts', import.meta.url).href,
        handshakeTimeout: 500,
      },
    },
  );
  t.after(() => engine.stop());
  // The first handshake hits the hung load: it is closed at the handshake timeout (fine).
  await assert.rejects(handshake(port, 'hang.source.test'));
  // The source answers now; reloading does not help either.
  await engine.reloadCertificates().catch(() => {});
  const started = Date.now();
  const cn = await handshake(port, 'hang.source.test').catch(
    (e: Error) => `failed after ${Date.now() - started} ms: ${e.message}`,
  );
  const loads = (globalThis as { hangLoads?: Map<string, number> }).hangLoads?.get('hang.source.test');
  assert.equal(cn, 'hang.source.test', `second handshake (source loads so far: ${loads})`);
});
