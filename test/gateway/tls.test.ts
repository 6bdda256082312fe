// TLS in the gateway: HTTPS listeners (X-Forwarded-Proto and Forwarded say https), certificates checked
// with the configuration, https:// upstreams verified against a CA (and refused when they do not verify),
// upstream mutual TLS, and health checks over TLS.
import assert from 'node:assert/strict';
import https from 'node:https';
import type net from 'node:net';
import { after, test } from 'node:test';
import { ConfigError, validateConfig } from 'netloom/gateway';
import { TestPki } from '../tls/certs.ts';
import { run } from '../tls/support.ts';
import {
  type Echo,
  echoed,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  send,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const front = pki.issue('front', ['gw.test']);
const back = pki.issue('back', ['backend.test', 'localhost']);
const gatewayClient = pki.issue('gateway-client', ['netloom-gateway'], { client: true });

async function httpsUpstream(options: https.ServerOptions = {}) {
  let requests = 0;
  const server = https.createServer({ cert: back.cert, key: back.key, ...options }, (req, res) => {
    requests++;
    const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate?.();
    res.setHeader('x-client-cn', peer?.subject?.CN ?? '');
    echoHandler('tls-upstream')(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    get requests() {
      return requests;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

test('an HTTPS listener: curl verifies the certificate, the upstream hears X-Forwarded-Proto and Forwarded https', async (t) => {
  const up = await httpUpstream(echoHandler('app'));
  t.after(() => up.close());
  const config = gatewayConfig({ app: upstreamOf([up.address]) }, [
    { name: 'all', match: { path: '/' }, upstream: 'app' },
  ]);
  (config.listeners as Record<string, unknown>[])[0]!.tls = {
    certFile: front.certFile,
    keyFile: front.keyFile,
  };
  const gw = await startTestGateway(config);
  t.after(() => gw.stop());
  const r = await run('curl', [
    '-s',
    '--cacert',
    pki.ca.certFile,
    '--resolve',
    `gw.test:${gw.port}:127.0.0.1`,
    `https://gw.test:${gw.port}/x`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const echo = JSON.parse(r.stdout) as Echo;
  assert.equal(echoed(echo, 'x-forwarded-proto'), 'https');
  assert.match(echoed(echo, 'forwarded') ?? '', /;proto=https;host="gw\.test:\d+"$/);
  // Plaintext to the HTTPS port is closed, not answered.
  const plain = await run('curl', [
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    `http://127.0.0.1:${gw.port}/x`,
  ]);
  assert.equal(plain.stdout, '000');
});

test('https:// targets: verified against upstreams.tls.caFile, SNI from servername; refused unverified (502)', async (t) => {
  const up = await httpsUpstream();
  t.after(() => up.close());
  const target = `https://127.0.0.1:${up.port}`;
  const gw = await startTestGateway(
    gatewayConfig(
      {
        good: upstreamOf([target], {
          tls: { caFile: pki.ca.certFile, servername: 'backend.test' },
          retries: 0,
        }),
        unknownCa: upstreamOf([target], { retries: 0 }),
        wrongName: upstreamOf([target], {
          tls: { caFile: pki.ca.certFile, servername: 'other.test' },
          retries: 0,
        }),
        unverified: upstreamOf([target], { tls: { verify: false }, retries: 0 }),
      },
      [
        { name: 'good', match: { path: '/good' }, upstream: 'good' },
        { name: 'unknown-ca', match: { path: '/unknown-ca' }, upstream: 'unknownCa' },
        { name: 'wrong-name', match: { path: '/wrong-name' }, upstream: 'wrongName' },
        { name: 'unverified', match: { path: '/unverified' }, upstream: 'unverified' },
      ],
    ),
  );
  t.after(() => gw.stop());
  const good = await send(gw.port, '/good');
  assert.equal(good.status, 200);
  assert.equal((JSON.parse(good.body.toString()) as Echo).name, 'tls-upstream');
  // A second request reuses the pooled TLS connection (no new handshake needed for it to work).
  assert.equal((await send(gw.port, '/good')).status, 200);
  assert.equal((await send(gw.port, '/unknown-ca')).status, 502);
  assert.equal((await send(gw.port, '/wrong-name')).status, 502);
  assert.equal((await send(gw.port, '/unverified')).status, 200);
});

test('upstream mutual TLS: the gateway presents its client certificate; without one the upstream refuses', async (t) => {
  const up = await httpsUpstream({ requestCert: true, rejectUnauthorized: true, ca: pki.ca.cert });
  t.after(() => up.close());
  const target = `https://127.0.0.1:${up.port}`;
  const tls = { caFile: pki.ca.certFile, servername: 'backend.test' };
  const gw = await startTestGateway(
    gatewayConfig(
      {
        withCert: upstreamOf([target], {
          tls: { ...tls, certFile: gatewayClient.certFile, keyFile: gatewayClient.keyFile },
          retries: 0,
        }),
        without: upstreamOf([target], { tls, retries: 0 }),
      },
      [
        { name: 'with', match: { path: '/with' }, upstream: 'withCert' },
        { name: 'without', match: { path: '/without' }, upstream: 'without' },
      ],
    ),
  );
  t.after(() => gw.stop());
  const ok = await send(gw.port, '/with');
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['x-client-cn'], 'netloom-gateway');
  assert.equal((await send(gw.port, '/without')).status, 502);
});

test('health checks run over TLS to https:// targets', async (t) => {
  const up = await httpsUpstream();
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig(
      {
        app: upstreamOf([`https://127.0.0.1:${up.port}`], {
          tls: { caFile: pki.ca.certFile, servername: 'backend.test' },
          healthCheck: { path: '/health', interval: 50, timeout: 500 },
        }),
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'app' }],
    ),
  );
  t.after(() => gw.stop());
  await waitUntil(() => up.requests >= 3, 3000, 'health checks over TLS');
  assert.equal((await send(gw.port, '/')).status, 200);
});

test('TLS files are checked with the configuration, each problem at its path', () => {
  const otherKey = pki.issue('other', ['other.test']).keyFile;
  const config = gatewayConfig(
    {
      a: upstreamOf(['https://127.0.0.1:1'], { tls: { caFile: '/nonexistent/ca.pem' } }),
      b: upstreamOf(['127.0.0.1:2'], { tls: { certFile: gatewayClient.certFile } }),
    },
    [{ name: 'r', match: { path: '/' }, upstream: 'a' }],
  );
  (config.listeners as Record<string, unknown>[])[0]!.tls = {
    certFile: front.certFile,
    keyFile: otherKey,
    certificates: {
      'api.test': { certFile: '/nonexistent/x.crt', keyFile: front.keyFile },
      'bad name': { certFile: front.certFile, keyFile: front.keyFile },
    },
    clientCertificates: { caFile: '/nonexistent/clients.pem' },
  };
  let problems: readonly string[] = [];
  try {
    validateConfig(config, 'tls.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    problems = err.problems;
  }
  const text = problems.join('\n');
  assert.match(text, /listeners\.0\.tls\.certFile: the certificate does not load/);
  assert.match(
    text,
    /listeners\.0\.tls\.certificates\.api\.test: the certificate no such file \/nonexistent\/x\.crt/,
  );
  assert.match(text, /listeners\.0\.tls\.certificates\.bad name: not a server name/);
  assert.match(text, /listeners\.0\.tls\.clientCertificates\.caFile: the CA no such file/);
  assert.match(text, /upstreams\.a\.tls\.caFile: the CA no such file/);
  assert.match(text, /upstreams\.b\.tls: certFile and keyFile go together/);
  assert.throws(
    () => validateConfig(gatewayConfig({ a: upstreamOf(['ftp://127.0.0.1:1']) }, []), 'x'),
    /not an address/,
  );
});

test('a reload that changes only a listener’s TLS applies it live on every loop; a bad one is refused', async (t) => {
  const up = await httpUpstream(echoHandler('app'));
  t.after(() => up.close());
  const api = pki.issue('api-reload', ['api.gw.test']);
  const make = (tls: Record<string, unknown>) => {
    const c = gatewayConfig({ app: upstreamOf([up.address]) }, [
      { name: 'all', match: { path: '/' }, upstream: 'app' },
    ]);
    (c.listeners as Record<string, unknown>[])[0] = { address: '127.0.0.1:0', loops: 2, tls };
    return c;
  };
  const base = { certFile: front.certFile, keyFile: front.keyFile };
  const gw = await startTestGateway(make(base));
  t.after(() => gw.stop());
  const cn = async (name: string) => {
    const r = await run(
      'openssl',
      ['s_client', '-connect', `127.0.0.1:${gw.port}`, '-servername', name],
      '',
      3000,
    );
    return /subject=.*?CN\s*=\s*([^,\n]+)/.exec(r.stdout)?.[1]?.trim();
  };
  assert.equal(await cn('api.gw.test'), 'gw.test');
  gw.source.set(
    make({ ...base, certificates: { 'api.gw.test': { certFile: api.certFile, keyFile: api.keyFile } } }),
  );
  const result = await gw.gateway.reload();
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.deepEqual((result as { restartRequired: readonly string[] }).restartRequired, []);
  for (let i = 0; i < 8; i++) assert.equal(await cn('api.gw.test'), 'api.gw.test', `handshake ${i}`);
  // A certificate that does not exist: refused by validation, the running TLS stays.
  gw.source.set(
    make({
      ...base,
      certificates: { 'api.gw.test': { certFile: '/nonexistent.crt', keyFile: api.keyFile } },
    }),
  );
  const refused = await gw.gateway.reload();
  assert.equal(refused.ok, false);
  assert.equal(await cn('api.gw.test'), 'api.gw.test');
  // Turning TLS off is a new listener: it waits for a restart.
  const plain = make(base);
  (plain.listeners as Record<string, unknown>[])[0] = { address: '127.0.0.1:0', loops: 2 };
  gw.source.set(plain);
  const later = await gw.gateway.reload();
  assert.deepEqual((later as { restartRequired?: readonly string[] }).restartRequired, ['listeners']);
});
