// The gateway's listeners speak HTTP/2 (h2c by prior knowledge, h2 by ALPN over TLS) and proxy to HTTP/1.1
// upstreams: the same routing, path rules and filters as HTTP/1.1; fields forwarded as HTTP/1.1 lines.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { raw } from '../http1/support.ts';
import { TestPki } from '../tls/certs.ts';
import { run } from '../tls/support.ts';
import {
  type Echo,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  type RunningGateway,
  startTestGateway,
  type TestUpstream,
  upstreamOf,
} from './support.ts';

interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

function h2request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers);
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (head = h));
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () =>
      resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) }),
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('HTTP/2 clients through the gateway to HTTP/1.1 upstreams', () => {
  let up: TestUpstream;
  let gw: RunningGateway;
  let session: http2.ClientHttp2Session;
  before(async () => {
    up = await httpUpstream((req, res) => {
      if (req.url === '/cookies') {
        res.setHeader('set-cookie', ['a=1', 'b=2']);
        res.setHeader('connection', 'keep-alive');
        res.end('two cookies');
        return;
      }
      echoHandler('echo')(req, res);
    });
    gw = await startTestGateway(
      gatewayConfig({ echo: upstreamOf([up.address]) }, [
        {
          name: 'maintenance',
          match: { path: '/down' },
          upstream: 'echo',
          filters: [{ name: 'respond', status: 503, body: 'down' }],
        },
        { name: 'all', match: { path: '/' }, upstream: 'echo' },
      ]),
    );
    session = http2.connect(gw.url);
  });
  after(async () => {
    session.close();
    await gw.stop();
    await up.close();
  });

  test('GET: host from :authority, the query kept, no pseudo-header or HTTP/2-only field upstream', async () => {
    const r = await h2request(session, { ':path': '/a/b?x=1&y=2', 'x-custom': 'v', cookie: 'c=1' });
    assert.equal(r.status, 200);
    const echo = JSON.parse(r.body.toString()) as Echo;
    assert.equal(echo.method, 'GET');
    assert.equal(echo.url, '/a/b?x=1&y=2');
    const names = echo.headers.map(([n]) => n);
    assert.equal(echo.headers.find(([n]) => n === 'host')?.[1], `127.0.0.1:${gw.port}`);
    assert.equal(echo.headers.find(([n]) => n === 'x-custom')?.[1], 'v');
    assert.ok(!names.some((n) => n.startsWith(':')), `${names}`);
  });

  test('a POST body of 300 KB streamed to the upstream byte-exact', async () => {
    const body = Buffer.alloc(300_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const r = await h2request(session, { ':path': '/upload', ':method': 'POST' }, body);
    const echo = JSON.parse(r.body.toString()) as Echo;
    assert.equal(echo.method, 'POST');
    assert.equal(echo.bodyLength, body.length);
  });

  test('response fields come back as HTTP/2 fields: set-cookie kept apart, connection dropped', async () => {
    const r = await h2request(session, { ':path': '/cookies' });
    assert.equal(r.status, 200);
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(r.headers.connection, undefined);
    assert.equal(r.body.toString(), 'two cookies');
  });

  test('filters run as for HTTP/1.1: a respond filter answers', async () => {
    const r = await h2request(session, { ':path': '/down' });
    assert.equal(r.status, 503);
    assert.equal(r.body.toString(), 'down');
  });

  test('path rules apply: /x/%2e%2e/down and //down route as /down (no bypass into the catch-all)', async () => {
    for (const path of ['/x/%2e%2e/down', '//down', '/x/../down']) {
      const r = await h2request(session, { ':path': path });
      assert.equal(r.status, 503, path);
    }
    const bad = await h2request(session, { ':path': '/x/..;/down' });
    assert.equal(bad.status, 400);
  });

  test('many concurrent streams on one connection are all proxied', async () => {
    const all = await Promise.all(
      Array.from({ length: 40 }, (_, i) => h2request(session, { ':path': `/c/${i}` })),
    );
    for (const [i, r] of all.entries()) assert.equal((JSON.parse(r.body.toString()) as Echo).url, `/c/${i}`);
  });

  test('HTTP/1.1 on the same listener still works', async () => {
    const r = await fetch(`${gw.url}/h1`);
    assert.equal(((await r.json()) as Echo).url, '/h1');
  });
});

test('http.http2: false: an HTTP/2 preface is not HTTP/2 to the gateway', async (t) => {
  const up = await httpUpstream(echoHandler('echo'));
  const gw = await startTestGateway(
    gatewayConfig(
      { echo: upstreamOf([up.address]) },
      [{ name: 'all', match: { path: '/' }, upstream: 'echo' }],
      {
        http: { http2: false },
      },
    ),
  );
  t.after(async () => {
    await gw.stop();
    await up.close();
  });
  const r = await raw(gw.port, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  assert.match(r.text, /^HTTP\/1\.1 (400|505) /);
});

test('a TLS listener offers h2 by ALPN: curl --http2 through the gateway', async (t) => {
  const pki = new TestPki();
  const cert = pki.issue('gw', ['gw.test']);
  const up = await httpUpstream(echoHandler('echo'));
  const gw = await startTestGateway({
    listeners: [
      { address: '127.0.0.1:0', loops: 1, tls: { certFile: cert.certFile, keyFile: cert.keyFile } },
    ],
    upstreams: { echo: upstreamOf([up.address]) },
    routes: [{ name: 'all', match: { path: '/' }, upstream: 'echo' }],
  });
  t.after(async () => {
    await gw.stop();
    await up.close();
    pki.cleanup();
  });
  const r = await run('curl', [
    '-s',
    '-i',
    '--http2',
    '--cacert',
    pki.ca.certFile,
    '--resolve',
    `gw.test:${gw.port}:127.0.0.1`,
    `https://gw.test:${gw.port}/over/tls`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^HTTP\/2 200/);
  assert.match(r.stdout, /"url":"\/over\/tls"/);
});

test('CONNECT over HTTP/2: 501 on a route that tunnels, 405 on one that does not (never a 500)', async (t) => {
  const up = await httpUpstream(echoHandler('echo'));
  const gw = await startTestGateway(
    gatewayConfig({ echo: upstreamOf([up.address]) }, [
      { name: 'tunnel', match: { host: 'tunnel.test', path: '/', methods: ['CONNECT'] }, upstream: 'echo' },
      { name: 'all', match: { path: '/' }, upstream: 'echo' },
    ]),
  );
  const session = http2.connect(gw.url);
  t.after(async () => {
    session.close();
    await gw.stop();
    await up.close();
  });
  const status = (authority: string) =>
    new Promise<number>((resolve, reject) => {
      const req = session.request({ ':method': 'CONNECT', ':authority': authority });
      req.on('response', (h) => {
        resolve(Number(h[':status']));
        req.close();
      });
      req.on('error', reject);
    });
  assert.equal(await status('tunnel.test:443'), 501);
  assert.equal(await status('other.test:443'), 405);
});
