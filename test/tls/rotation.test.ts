// Certificates change without a restart: a replaced file (watched) or engine.reloadCertificates() makes new
// handshakes use the new certificate on every loop while a load runs with no failed handshake; a bad new
// file is refused with a clear message and the previous certificate stays. Certificates in a directory load
// on the first handshake naming them; those from a CertificateSource too, one load per name.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import tls from 'node:tls';
import { serve } from 'netloom';
import { TestPki } from './certs.ts';
import { sClient, sleep } from './support.ts';

const HANDLER = new URL('../fixtures/tls-handler.ts', import.meta.url);
const pki = new TestPki();
after(() => pki.cleanup());

/** One verified handshake to `name`; resolves with the served certificate's serial, or rejects. */
function handshake(port: number, name: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: name, ca: pki.ca.cert }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(serial);
    });
    s.on('error', reject);
  });
}

/** Replaces a pair the way deploy tools do: each file written beside, then renamed over the old one. */
function replacePair(dir: string, base: string, from: { certFile: string; keyFile: string }): void {
  copyFileSync(from.certFile, join(dir, `.${base}.crt.tmp`));
  copyFileSync(from.keyFile, join(dir, `.${base}.key.tmp`));
  renameSync(join(dir, `.${base}.crt.tmp`), join(dir, `${base}.crt`));
  renameSync(join(dir, `.${base}.key.tmp`), join(dir, `${base}.key`));
}

test('a replaced certificate file applies on every loop while handshakes run, none failing', async (t) => {
  const dir = join(pki.dir, 'live');
  mkdirSync(dir);
  const v1 = pki.issue('v1', ['live.test']);
  const v2 = pki.issue('v2', ['live.test']);
  replacePair(dir, 'live', v1);
  const engine = await serve(HANDLER, {
    loops: 2,
    tls: { certFile: join(dir, 'live.crt'), keyFile: join(dir, 'live.key') },
  });
  t.after(() => engine.stop());
  const serialV1 = await handshake(engine.port, 'live.test');
  const seen: string[] = [];
  let failures = 0;
  let running = true;
  const load = (async () => {
    while (running) {
      await Promise.all(
        Array.from({ length: 4 }, () =>
          handshake(engine.port, 'live.test').then(
            (s) => void seen.push(s),
            () => void failures++,
          ),
        ),
      );
    }
  })();
  await sleep(200);
  replacePair(dir, 'live', v2);
  // Both loops must serve v2 within a second: look for a run of new-certificate handshakes.
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && !seen.slice(-16).every((s) => s !== serialV1)) await sleep(50);
  running = false;
  await load;
  assert.equal(failures, 0, 'no handshake failed while the certificate changed');
  const last = seen.slice(-16);
  assert.ok(
    last.length === 16 && last.every((s) => s !== serialV1),
    `still served the old certificate: ${last}`,
  );
  assert.ok(seen.includes(serialV1), 'the old certificate served before the change');
});

test('a bad new file is refused (the old certificate stays); reloadCertificates() names the problem', async (t) => {
  const dir = join(pki.dir, 'bad');
  mkdirSync(dir);
  const good = pki.issue('good', ['bad.test']);
  const next = pki.issue('next', ['bad.test']);
  replacePair(dir, 'site', good);
  const engine = await serve(HANDLER, {
    loops: 2,
    tls: { certFile: join(dir, 'site.crt'), keyFile: join(dir, 'site.key') },
  });
  t.after(() => engine.stop());
  const before = await handshake(engine.port, 'bad.test');
  writeFileSync(
    join(dir, 'site.crt'),
    '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n',
  );
  await sleep(400); // the watch saw it and refused it
  assert.equal(await handshake(engine.port, 'bad.test'), before, 'the previous certificate still serves');
  await assert.rejects(engine.reloadCertificates(), (err: { code: string; message: string }) => {
    assert.equal(err.code, 'ERR_NETLOOM_TLS');
    assert.match(err.message, /certificates not reloaded: .*does not load.*the previous certificate stays/);
    return true;
  });
  // A key that does not belong to the certificate: refused the same way.
  copyFileSync(next.certFile, join(dir, 'site.crt'));
  await assert.rejects(engine.reloadCertificates(), /does not load/);
  assert.equal(await handshake(engine.port, 'bad.test'), before);
  // Both files of the new pair: the call applies it on every loop at once.
  copyFileSync(next.keyFile, join(dir, 'site.key'));
  await engine.reloadCertificates();
  const after = await Promise.all(Array.from({ length: 8 }, () => handshake(engine.port, 'bad.test')));
  assert.ok(
    after.every((s) => s !== before),
    `served ${after}`,
  );
});

test('a certificate directory: loaded at the first handshake naming it, wildcards, new and replaced pairs', async (t) => {
  const dir = join(pki.dir, 'certs');
  mkdirSync(dir);
  const fallback = pki.issue('fallback', ['fallback.test']);
  replacePair(dir, 'a.dir.test', pki.issue('a1', ['a.dir.test']));
  replacePair(dir, '_wildcard.dir.test', pki.issue('w1', ['*.dir.test']));
  const engine = await serve(HANDLER, {
    loops: 1,
    tls: { cert: fallback.cert, key: fallback.key, certificateDirectory: dir },
  });
  t.after(() => engine.stop());
  assert.equal((await sClient(engine.port, ['-servername', 'a.dir.test'])).servedCN, 'a.dir.test');
  assert.equal((await sClient(engine.port, ['-servername', 'zz.dir.test'])).servedCN, '*.dir.test');
  assert.equal((await sClient(engine.port, ['-servername', 'new.dir.test'])).servedCN, '*.dir.test');
  // Names that are not host names never reach the file system: the default certificate answers.
  for (const name of ['..', 'a/../../etc', 'x..dir.test']) {
    const r = await sClient(engine.port, ['-servername', name]);
    assert.equal(r.servedCN, 'fallback.test', `${name}: ${r.out.slice(0, 300)}`);
  }
  // A pair added after start serves its name (the miss was not kept); a replaced one serves its new self.
  replacePair(dir, 'new.dir.test', pki.issue('n1', ['new.dir.test']));
  const a2 = pki.issue('a2', ['a.dir.test']);
  const aBefore = await handshake(engine.port, 'a.dir.test');
  replacePair(dir, 'a.dir.test', a2);
  await sleep(400);
  assert.equal((await sClient(engine.port, ['-servername', 'new.dir.test'])).servedCN, 'new.dir.test');
  assert.notEqual(await handshake(engine.port, 'a.dir.test'), aBefore);
});

test('a CertificateSource module: one load per name however many handshakes wait for it; a failing source is refused', async (t) => {
  const dir = join(pki.dir, 'source');
  mkdirSync(dir);
  replacePair(dir, 'src.test', pki.issue('src', ['src.test']));
  process.env.NETLOOM_TEST_SOURCE_DIR = dir;
  const source = new URL('../fixtures/cert-source.ts', import.meta.url).href;
  const fallback = pki.issue('fallback2', ['fallback.test']);
  const engine = await serve(HANDLER, {
    loops: 1,
    tls: { cert: fallback.cert, key: fallback.key, certificateSource: source },
  });
  t.after(() => engine.stop());
  const serials = await Promise.all(Array.from({ length: 5 }, () => handshake(engine.port, 'src.test')));
  assert.equal(new Set(serials).size, 1);
  const { loads } = (await import(source)) as { loads: Map<string, number> };
  assert.equal(loads.get('src.test'), 1, 'concurrent handshakes shared one load, and later ones the cache');
  assert.equal((await sClient(engine.port, ['-servername', 'src.test'])).servedCN, 'src.test');
  assert.equal(loads.get('src.test'), 1);
  // A source that throws: the default certificate answers (unknownServername: default), the loop lives on.
  assert.equal((await sClient(engine.port, ['-servername', 'broken.source.test'])).servedCN, 'fallback.test');
  assert.equal((await sClient(engine.port, ['-servername', 'src.test'])).servedCN, 'src.test');
});

test('engine.updateTls: new settings on every loop (an SNI certificate added, TLS 1.3 only); bad ones change nothing', async (t) => {
  const base = pki.issue('upd-base', ['upd.test']);
  const extra = pki.issue('upd-extra', ['extra.upd.test']);
  const engine = await serve(HANDLER, { loops: 2, tls: { cert: base.cert, key: base.key } });
  t.after(() => engine.stop());
  assert.equal((await sClient(engine.port, ['-servername', 'extra.upd.test'])).servedCN, 'upd.test');
  await engine.updateTls({
    cert: base.cert,
    key: base.key,
    minVersion: 'TLSv1.3',
    certificates: { 'extra.upd.test': { cert: extra.cert, key: extra.key } },
  });
  for (let i = 0; i < 6; i++) {
    assert.equal((await sClient(engine.port, ['-servername', 'extra.upd.test'])).servedCN, 'extra.upd.test');
  }
  assert.equal((await sClient(engine.port, ['-tls1_2'])).answer, null, 'TLS 1.2 is refused now');
  await assert.rejects(engine.updateTls({ cert: base.cert }), { code: 'ERR_NETLOOM_OPTION' });
  await assert.rejects(engine.updateTls({ cert: base.cert, key: extra.key }), { code: 'ERR_NETLOOM_TLS' });
  assert.equal((await sClient(engine.port, ['-servername', 'extra.upd.test'])).servedCN, 'extra.upd.test');
});

test('a certificate directory removed and made again (a remount) is watched again: its new pair serves', async (t) => {
  const parent = join(pki.dir, 'remount');
  mkdirSync(parent);
  const dir = join(parent, 'tls');
  mkdirSync(dir);
  const v1 = pki.issue('remount-v1', ['remount.test']);
  const v2 = pki.issue('remount-v2', ['remount.test']);
  replacePair(dir, 'site', v1);
  const engine = await serve(HANDLER, {
    loops: 1,
    tls: { certFile: join(dir, 'site.crt'), keyFile: join(dir, 'site.key') },
  });
  t.after(() => engine.stop());
  const before = await handshake(engine.port, 'remount.test');
  const { rmSync } = await import('node:fs');
  rmSync(dir, { recursive: true });
  await sleep(300);
  mkdirSync(dir);
  replacePair(dir, 'site', v2);
  // The watcher on the old directory is deaf; the recheck (every 2 s) watches the new one and reads it.
  const deadline = Date.now() + 6000;
  let now = before;
  while (Date.now() < deadline && now === before) {
    await sleep(200);
    now = await handshake(engine.port, 'remount.test');
  }
  assert.notEqual(now, before, 'the new pair serves');
});
