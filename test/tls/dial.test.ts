// loop.dial over TLS: verification on by default (chain and name), a CA of one's own, SNI, ALPN, a client
// certificate, resumption with a saved session, and writes made before the handshake sent after it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { DialTlsOptions, Engine, EventLoop, TlsInfo } from 'netloom';
import { serve } from 'netloom';
import { serveInline } from '../helpers.ts';
import { TestPki } from './certs.ts';

const HANDLER = new URL('../fixtures/tls-handler.ts', import.meta.url);
const pki = new TestPki();
const server = pki.issue('server', ['dial.test', 'other.test']);
const client = pki.issue('client', ['bob'], { client: true });
let target: Engine;
let mtls: Engine;
let loop: EventLoop;
let dialer: Engine;

before(async () => {
  target = await serve(HANDLER, {
    tls: { cert: server.cert, key: server.key, alpnProtocols: ['h2', 'http/1.1'], minVersion: 'TLSv1.2' },
  });
  mtls = await serve(HANDLER, {
    tls: { cert: server.cert, key: server.key, clientCertificates: { ca: pki.ca.cert } },
  });
  ({ engine: dialer, loop } = await serveInline({}));
});
after(async () => {
  await Promise.all([target.stop(), mtls.stop(), dialer.stop()]);
  pki.cleanup();
});

interface Outcome {
  answer: Record<string, unknown> | null;
  error: (Error & { code?: string; cause?: { code?: string } }) | undefined;
  tls: TlsInfo | null;
  session: Buffer | null;
}

/** Dials `port` with `tls`, writes a line at once (before the handshake), and reports how it ended. */
function dial(port: number, tls: DialTlsOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    let answer: Record<string, unknown> | null = null;
    let info: Outcome['tls'] = null;
    let session: Buffer | null = null;
    const conn = loop.dial(
      `127.0.0.1:${port}`,
      {
        onOpen(c) {
          info = c.tls;
        },
        onTraffic(c) {
          const text = c.next().toString();
          answer = JSON.parse(text.trim());
          session = c.tls?.session() ?? null;
        },
        onClose(_c, err) {
          resolve({ answer, error: err as Outcome['error'], tls: info, session });
        },
      },
      { tls },
    );
    conn.write('written before the handshake\n');
  });
}

test('verified against our CA, with SNI and ALPN; the line written before the handshake arrives', async () => {
  const r = await dial(target.port, {
    ca: pki.ca.cert,
    servername: 'dial.test',
    alpnProtocols: ['http/1.1'],
  });
  assert.equal(r.error, undefined);
  assert.equal(r.answer?.got, 'written before the handshake');
  assert.equal(r.answer?.servername, 'dial.test');
  assert.equal(r.answer?.alpn, 'http/1.1');
  assert.equal(r.tls?.authorized, true);
  assert.equal(r.tls?.alpnProtocol, 'http/1.1');
});

test('verification is on by default: an unknown CA is ERR_NETLOOM_DIAL with the OpenSSL reason', async () => {
  const r = await dial(target.port, { servername: 'dial.test' });
  assert.equal(r.answer, null);
  assert.equal(r.error?.code, 'ERR_NETLOOM_DIAL');
  assert.match(String(r.error?.cause?.code), /SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/);
});

test('a name the certificate does not cover is refused', async () => {
  const r = await dial(target.port, { ca: pki.ca.cert, servername: 'evil.test' });
  assert.equal(r.error?.code, 'ERR_NETLOOM_DIAL');
  assert.equal(r.error?.cause?.code, 'ERR_TLS_CERT_ALTNAME_INVALID');
});

test('rejectUnauthorized: false connects without verifying (and says so)', async () => {
  const r = await dial(target.port, { rejectUnauthorized: false, servername: 'whatever.test' });
  assert.equal(r.error, undefined);
  assert.equal(r.tls?.authorized, false);
  assert.ok(r.tls?.authorizationError);
});

test('a client certificate for a listener that requires one; without it the dial fails', async () => {
  const ok = await dial(mtls.port, {
    ca: pki.ca.cert,
    servername: 'dial.test',
    cert: client.cert,
    key: client.key,
  });
  assert.equal(ok.error, undefined);
  assert.deepEqual([ok.answer?.authorized, ok.answer?.peer], [true, 'bob']);
  const refused = await dial(mtls.port, { ca: pki.ca.cert, servername: 'dial.test' });
  assert.equal(refused.answer, null);
});

test('a saved session resumes the next dial', async () => {
  const first = await dial(target.port, { ca: pki.ca.cert, servername: 'dial.test' });
  assert.ok(first.session !== null, 'a session to save');
  const second = await dial(target.port, {
    ca: pki.ca.cert,
    servername: 'dial.test',
    session: first.session!,
  });
  assert.equal(second.answer?.resumed, true);
  assert.equal(second.tls?.resumed, true);
});
