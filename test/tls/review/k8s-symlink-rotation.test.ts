// A Kubernetes secret volume rotates by swapping the `..data` symlink (the files tls.crt/tls.key are symlinks
// into ..data/). The watcher sees events for `..data` / `..data_tmp`, never for tls.crt: no reload happens.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, renameSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import tls from 'node:tls';
import { serveInline } from '../../helpers.ts';
import { TestPki } from '../certs.ts';
import { sleep } from '../support.ts';

const pki = new TestPki();
after(() => pki.cleanup());

function serial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'k8s.test', ca: pki.ca.cert }, () => {
      const sn = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(sn);
    });
    s.on('error', reject);
  });
}

function version(dir: string, name: string, from: { certFile: string; keyFile: string }): void {
  mkdirSync(join(dir, name));
  copyFileSync(from.certFile, join(dir, name, 'tls.crt'));
  copyFileSync(from.keyFile, join(dir, name, 'tls.key'));
}

test('a Kubernetes-style ..data symlink swap rotates the certificate', async (t) => {
  const dir = join(pki.dir, 'secret');
  mkdirSync(dir);
  const v1 = pki.issue('k1', ['k8s.test']);
  const v2 = pki.issue('k2', ['k8s.test']);
  version(dir, '..2024_01', v1);
  symlinkSync('..2024_01', join(dir, '..data'));
  symlinkSync('..data/tls.crt', join(dir, 'tls.crt'));
  symlinkSync('..data/tls.key', join(dir, 'tls.key'));
  const { engine, port } = await serveInline(
    { onTraffic: (c) => void c.next() },
    { tls: { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') } },
  );
  t.after(() => engine.stop());
  const s1 = await serial(port);
  // What the kubelet's atomic writer does: a new timestamped dir, ..data_tmp -> it, renamed over ..data.
  version(dir, '..2024_02', v2);
  symlinkSync('..2024_02', join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  await sleep(1000);
  const s2 = await serial(port);
  assert.notEqual(s2, s1, 'the new certificate is served after the ..data swap');
});
