// TLS on the engine's listener, checked with Debian's openssl s_client and curl: certificates by SNI (exact,
// wildcard, default, refusal), ALPN on the Conn, client certificates, and what happens to bytes that are not
// a TLS handshake.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Engine, serve, type TlsOptions } from 'netloom';
import { TestPki } from './certs.ts';
import { plain, run, sClient, sleep } from './support.ts';

const HANDLER = new URL('../fixtures/tls-handler.ts', import.meta.url);
const pki = new TestPki();
after(() => pki.cleanup());
const main = pki.issue('main', ['main.test']);
const api = pki.issue('api', ['api.example.test']);
const wild = pki.issue('wild', ['*.example.test']);

async function start(tls: TlsOptions, extra: Record<string, unknown> = {}): Promise<Engine> {
  const { default: handler } = await import(HANDLER.href);
  return serve(handler, { tls, ...extra });
}

describe('certificates by SNI', () => {
  let engine: Engine;
  before(async () => {
    engine = await start({
      certFile: main.certFile,
      keyFile: main.keyFile,
      certificates: {
        'api.example.test': { cert: api.cert, key: api.key },
        '*.example.test': { certFile: wild.certFile, keyFile: wild.keyFile },
      },
    });
  });
  after(() => engine.stop());

  const cases: [string | null, string][] = [
    ['api.example.test', 'api.example.test'], // exact beats the wildcard
    ['API.Example.Test', 'api.example.test'], // names are case-insensitive
    ['www.example.test', '*.example.test'], // one label under the wildcard
    ['a.b.example.test', 'main.test'], // two labels: not the wildcard's, so the default
    ['example.test', 'main.test'], // the wildcard's parent is not covered either
    ['unknown.test', 'main.test'],
    [null, 'main.test'], // no SNI at all
  ];
  for (const [name, cn] of cases) {
    test(`${name ?? 'no server name'} gets ${cn}`, async () => {
      const args = [
        '-CAfile',
        pki.ca.certFile,
        ...(name === null ? ['-noservername'] : ['-servername', name]),
      ];
      const r = await sClient(engine.port, args);
      assert.equal(r.servedCN, cn, r.out);
      assert.equal(r.answer?.servername ?? null, name === null ? null : name.toLowerCase());
      assert.ok(r.verified, 'the chain verifies against the test CA');
    });
  }

  test('curl verifies the certificate for the name it asked (a real client, HTTP over the engine)', async () => {
    const r = await run('curl', [
      '-s',
      '--cacert',
      pki.ca.certFile,
      '--resolve',
      `www.example.test:${engine.port}:127.0.0.1`,
      `https://www.example.test:${engine.port}/`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout) as { servername: string; alpn: string | null; got: string };
    assert.equal(body.servername, 'www.example.test');
  });
});

describe('unknownServername: refuse', () => {
  let engine: Engine;
  before(async () => {
    engine = await start({
      certFile: main.certFile,
      keyFile: main.keyFile,
      unknownServername: 'refuse',
      certificates: { 'api.example.test': { cert: api.cert, key: api.key } },
    });
  });
  after(() => engine.stop());

  test('a known name is served, an unknown one and no name are refused and counted', async () => {
    assert.equal(
      (await sClient(engine.port, ['-servername', 'api.example.test'])).servedCN,
      'api.example.test',
    );
    const before = engine.stats().total.tlsFailed;
    const unknown = await sClient(engine.port, ['-servername', 'nope.test']);
    assert.equal(unknown.answer, null);
    assert.match(unknown.out, /unrecognized name|alert|unexpected eof|handshake failure/i);
    const none = await sClient(engine.port, ['-noservername']);
    assert.equal(none.answer, null);
    assert.equal(engine.stats().total.tlsFailed - before, 2);
  });
});

describe('ALPN', () => {
  let engine: Engine;
  before(async () => {
    engine = await start({ cert: main.cert, key: main.key, alpnProtocols: ['h2', 'http/1.1'] });
  });
  after(() => engine.stop());

  test("the server's preference wins, and conn.alpnProtocol says which", async () => {
    assert.equal((await sClient(engine.port, ['-alpn', 'http/1.1,h2'])).answer?.alpn, 'h2');
    assert.equal((await sClient(engine.port, ['-alpn', 'http/1.1'])).answer?.alpn, 'http/1.1');
    assert.equal((await sClient(engine.port, [])).answer?.alpn, null); // the client offered none
  });

  test('a client offering only protocols the server lacks is refused (no_application_protocol)', async () => {
    const r = await sClient(engine.port, ['-alpn', 'spdy/3']);
    assert.equal(r.answer, null);
    assert.match(r.out, /no application protocol|alert/i);
  });
});

describe('client certificates (mutual TLS)', () => {
  const otherCa = new TestPki('another CA');
  after(() => otherCa.cleanup());
  const good = pki.issue('client-good', ['alice'], { client: true });
  const foreign = otherCa.issue('client-foreign', ['mallory'], { client: true });
  const expired = pki.issue('client-expired', ['old'], { client: true, days: -1 });

  test('required: a certificate from the CA is accepted and its subject is on the Conn; others are refused', async (t) => {
    const engine = await start({
      cert: main.cert,
      key: main.key,
      clientCertificates: { caFile: pki.ca.certFile },
    });
    t.after(() => engine.stop());
    const ok = await sClient(engine.port, ['-cert', good.certFile, '-key', good.keyFile]);
    assert.deepEqual([ok.answer?.authorized, ok.answer?.peer], [true, 'alice'], ok.out);
    for (const [args, why] of [
      [[], 'no certificate'],
      [['-cert', foreign.certFile, '-key', foreign.keyFile], 'a foreign CA'],
      [['-cert', expired.certFile, '-key', expired.keyFile], 'expired'],
    ] as const) {
      const r = await sClient(engine.port, [...args]);
      assert.equal(r.answer, null, `${why}: refused`);
    }
  });

  test('optional: the handshake proceeds and conn.tls says whether the certificate verified', async (t) => {
    const engine = await start({
      cert: main.cert,
      key: main.key,
      clientCertificates: { ca: pki.ca.cert, required: false },
    });
    t.after(() => engine.stop());
    const ok = await sClient(engine.port, ['-cert', good.certFile, '-key', good.keyFile]);
    assert.deepEqual([ok.answer?.authorized, ok.answer?.peer], [true, 'alice']);
    const none = await sClient(engine.port, []);
    assert.deepEqual([none.answer?.authorized, none.answer?.peer], [false, null]);
    const bad = await sClient(engine.port, ['-cert', foreign.certFile, '-key', foreign.keyFile]);
    assert.deepEqual([bad.answer?.authorized, bad.answer?.peer], [false, 'mallory']);
  });
});

describe('bytes that are not a handshake', () => {
  let engine: Engine;
  before(async () => {
    engine = await start({ cert: main.cert, key: main.key, handshakeTimeout: 400 }, { maxConnections: 3 });
  });
  after(() => engine.stop());

  test('plaintext HTTP on the TLS port is closed at once and counted', async () => {
    const before = engine.stats().total.tlsPlaintext;
    const r = await plain(engine.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(r.text, '');
    assert.ok(r.closedAfter < 300, `closed after ${r.closedAfter} ms`);
    assert.equal(engine.stats().total.tlsPlaintext - before, 1);
  });

  test('garbage after a handshake record header is a failed handshake, closed and counted', async () => {
    const before = engine.stats().total.tlsFailed;
    const record = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x20]), Buffer.alloc(32, 0xee)]);
    const r = await plain(engine.port, record);
    assert.ok(r.closedAfter < 300, `closed after ${r.closedAfter} ms`);
    await sleep(20);
    assert.equal(engine.stats().total.tlsFailed - before, 1);
  });

  test('a record header claiming more than 2^14 bytes is not TLS: closed at once', async () => {
    const r = await plain(engine.port, Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff]));
    assert.ok(r.closedAfter < 300, `closed after ${r.closedAfter} ms`);
  });

  test('a client that stalls (silent, or mid-ClientHello) is closed at the handshake timeout and counted', async () => {
    const before = engine.stats().total.tlsTimedOut;
    const [silent, partial] = await Promise.all([
      plain(engine.port, ''),
      plain(engine.port, Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])), // 512 bytes promised, 1 sent
    ]);
    for (const r of [silent, partial]) {
      assert.ok(r.closedAfter >= 350 && r.closedAfter < 1200, `closed after ${r.closedAfter} ms`);
    }
    assert.equal(engine.stats().total.tlsTimedOut - before, 2);
  });

  test('handshakes in progress count toward maxConnections (3): a fourth is refused at accept', async () => {
    const before = engine.stats().total.rejected;
    const stalls = [plain(engine.port, ''), plain(engine.port, ''), plain(engine.port, '')];
    await sleep(100);
    const fourth = await plain(engine.port, '', 1000);
    assert.ok(fourth.closedAfter < 300, `the fourth closed after ${fourth.closedAfter} ms`);
    assert.equal(engine.stats().total.rejected - before, 1);
    await Promise.all(stalls);
    // Once they timed out, a real client gets in.
    assert.notEqual((await sClient(engine.port, [])).answer, null);
  });
});

describe('options', () => {
  test('bad tls options are ERR_NETLOOM_OPTION naming the path; a certificate that does not load is ERR_NETLOOM_TLS', async () => {
    const bad: [TlsOptions, RegExp][] = [
      [{}, /tls needs a certificate/],
      [{ cert: main.cert }, /needs its key/],
      [{ cert: main.cert, certFile: main.certFile, key: main.key }, /cert or certFile/],
      [{ cert: main.cert, key: main.key, minVersion: 'TLSv1.1' as 'TLSv1.2' }, /tls.minVersion/],
      [
        { cert: main.cert, key: main.key, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.2' },
        /minVersion must not be above/,
      ],
      [{ cert: main.cert, key: main.key, handshakeTimeout: 0 }, /tls.handshakeTimeout/],
      [
        { cert: main.cert, key: main.key, certificates: { 'a b': { cert: api.cert, key: api.key } } },
        /not a server name/,
      ],
      [
        { cert: main.cert, key: main.key, certificates: { 'x.test': { cert: api.cert } } },
        /x.test.*needs its key|needs cert and key/,
      ],
      [{ cert: main.cert, key: main.key, clientCertificates: {} }, /needs ca or caFile/],
      [{ cert: main.cert, key: main.key, alpnProtocols: [''] }, /alpnProtocols/],
    ];
    for (const [tls, message] of bad) {
      await assert.rejects(serve({}, { tls }), (err: { code: string; message: string }) => {
        assert.equal(err.code, 'ERR_NETLOOM_OPTION', err.message);
        assert.match(err.message, message);
        return true;
      });
    }
    await assert.rejects(serve({}, { tls: { cert: main.cert, key: api.key } }), {
      code: 'ERR_NETLOOM_TLS',
      message: /does not load/,
    });
    await assert.rejects(serve({}, { tls: { certFile: '/nonexistent.crt', keyFile: main.keyFile } }), {
      code: 'ERR_NETLOOM_TLS',
      message: /no such file/,
    });
  });
});
