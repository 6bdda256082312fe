// Issue 11, items 10-11: the upstream request line and Host. Host for a target written `tcp://h:port` is
// `h:port` (proxied requests and health checks); configuration strings that reach the request line are
// refused by validation, by path, when they hold CR, LF, SP or characters above U+00FF; a rewrite always
// gives a path starting with `/`, and a prefix only matches at a segment boundary.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { ConfigError, validateConfig } from 'netloom/gateway';
import { raw, responses } from '../http1/support.ts';
import {
  type Echo,
  echoed,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  sendJson,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

test('Host for a target written tcp://h:port or tcp4://h:port is h:port (preserveHost off, and no client Host)', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  for (const scheme of ['tcp://', 'tcp4://']) {
    const address = `${scheme}127.0.0.1:${up.port}`;
    const gw = await startTestGateway(
      gatewayConfig({ u: upstreamOf([address]), v: upstreamOf([address]) }, [
        { name: 'target-host', match: { path: '/t' }, upstream: 'u', preserveHost: false },
        { name: 'kept-host', match: { path: '/k' }, upstream: 'v' },
      ]),
    );
    try {
      const r = await sendJson<Echo>(gw.port, '/t', { headers: { host: 'client.example' } });
      assert.equal(echoed(r.json, 'host'), `127.0.0.1:${up.port}`, address);
      // HTTP/1.0 without a Host: the target's Host, even where the route keeps the client's.
      const answer = responses((await raw(gw.port, 'GET /k HTTP/1.0\r\n\r\n')).text);
      assert.equal(answer.length, 1);
      assert.equal(answer[0]!.status, 200);
      const echo = JSON.parse(answer[0]!.body) as Echo;
      assert.equal(echoed(echo, 'host'), `127.0.0.1:${up.port}`, address);
    } finally {
      await gw.stop();
    }
  }
});

test('Host for a target written tcp6://[::1]:port is [::1]:port', async (t) => {
  const server = net.createServer();
  const ipv6 = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(0, '::1', () => resolve(true));
  });
  server.close();
  if (!ipv6) {
    t.skip('no IPv6 loopback');
    return;
  }
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  await new Promise<void>((resolve) => up.server.close(() => resolve()));
  await new Promise<void>((resolve) => up.server.listen(up.port, '::1', resolve));
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([`tcp6://[::1]:${up.port}`]) }, [
      { name: 'r', match: { path: '/' }, upstream: 'u', preserveHost: false },
    ]),
  );
  t.after(() => gw.stop());
  const r = await sendJson<Echo>(gw.port, '/');
  assert.equal(r.status, 200);
  assert.equal(echoed(r.json, 'host'), `[::1]:${up.port}`);
});

test('health checks of a tcp:// target carry Host h:port and the configured path', async (t) => {
  const seen: { host: string | undefined; url: string | undefined }[] = [];
  const up = await httpUpstream((req, res) => {
    seen.push({ host: req.headers.host, url: req.url });
    res.writeHead(200, { 'content-length': 0 });
    res.end();
  });
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig(
      {
        u: upstreamOf([`tcp://127.0.0.1:${up.port}`], {
          healthCheck: { path: '/status?deep=1', interval: 50, timeout: 500 },
        }),
      },
      [{ name: 'r', match: { path: '/' }, upstream: 'u' }],
    ),
  );
  t.after(() => gw.stop());
  await waitUntil(() => seen.length >= 2, 2000, 'two health checks');
  assert.deepEqual(seen[0], { host: `127.0.0.1:${up.port}`, url: '/status?deep=1' });
});

test('CR, LF, SP, TAB or a character above U+00FF in rewrite and health-check paths is refused by validation, by path', () => {
  const bad = [
    '/a b',
    '/a\r\nX-Injected: 1',
    '/a\n',
    '/a\r',
    '/a\tb',
    '/\u0100',
    '/\u4e2d',
    '/\ud83d\ude00',
    '/a\0',
  ];
  const config = (route: Record<string, unknown>, healthCheck?: Record<string, unknown>) =>
    gatewayConfig({ u: upstreamOf(['127.0.0.1:1'], healthCheck === undefined ? {} : { healthCheck }) }, [
      { name: 'r', match: { path: '/' }, upstream: 'u', ...route },
    ]);
  const cases: [string, (s: string) => Record<string, unknown>][] = [
    ['routes.0.rewrite.replace', (s) => config({ rewrite: { replace: s } })],
    [
      'routes.0.rewrite.replacePrefix.to',
      (s) => config({ rewrite: { replacePrefix: { from: '/x', to: s } } }),
    ],
    [
      'routes.0.rewrite.replacePrefix.from',
      (s) => config({ rewrite: { replacePrefix: { from: s, to: '/x' } } }),
    ],
    ['routes.0.rewrite.stripPrefix', (s) => config({ rewrite: { stripPrefix: s } })],
    ['upstreams.u.healthCheck.path', (s) => config({}, { path: s })],
  ];
  for (const [path, make] of cases) {
    // A health-check path may carry a query; a rewrite's query would clash with the client's (refused).
    assert.doesNotThrow(
      () => validateConfig(make(path.includes('rewrite') ? '/fine/path' : '/fine/path?x=1')),
      path,
    );
    for (const s of bad) {
      let problems: readonly string[] = [];
      try {
        validateConfig(make(s));
      } catch (err) {
        assert.ok(err instanceof ConfigError, String(err));
        problems = err.problems;
      }
      assert.equal(problems.length, 1, `${path} ${JSON.stringify(s)}: ${JSON.stringify(problems)}`);
      assert.ok(problems[0]!.startsWith(`${path}: `), `${JSON.stringify(s)}: ${problems[0]}`);
    }
  }
});

test('stripPrefix and replacePrefix match at segment boundaries, and every rewritten path starts with /', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [
      { name: 'strip', match: { path: '/s' }, upstream: 'u', rewrite: { stripPrefix: '/s/api' } },
      { name: 'strip-slash', match: { path: '/t' }, upstream: 'u', rewrite: { stripPrefix: '/t/api/' } },
      {
        name: 'replace-prefix',
        match: { path: '/r' },
        upstream: 'u',
        rewrite: { replacePrefix: { from: '/r/api', to: '/v2' } },
      },
      {
        name: 'replace-to-root',
        match: { path: '/q' },
        upstream: 'u',
        rewrite: { replacePrefix: { from: '/q/api', to: '/' } },
      },
      { name: 'replace', match: { path: '/f' }, upstream: 'u', rewrite: { replace: '/fixed' } },
    ]),
  );
  t.after(() => gw.stop());
  const expected: [string, string][] = [
    ['/s/api', '/'],
    ['/s/api/', '/'],
    ['/s/api/x', '/x'],
    ['/s/api?q=1', '/?q=1'],
    ['/s/apix', '/s/apix'],
    ['/s/apix/y', '/s/apix/y'],
    ['/s/API/x', '/s/API/x'],
    ['/s//api//x', '/x'],
    ['/s/x/../api/y', '/y'],
    ['/t/api', '/'],
    ['/t/api/x', '/x'],
    ['/t/apix', '/t/apix'],
    ['/r/api', '/v2'],
    ['/r/api/x?y=2', '/v2/x?y=2'],
    ['/r/apix', '/r/apix'],
    ['/q/api', '/'],
    ['/q/api/x', '/x'],
    ['/q/apix', '/q/apix'],
    ['/f/anything?x=1', '/fixed?x=1'],
  ];
  const got: [string, string][] = [];
  for (const [from] of expected) {
    const answer = responses(
      (await raw(gw.port, `GET ${from} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n`)).text,
    );
    got.push([
      from,
      answer[0]?.status === 200 ? (JSON.parse(answer[0].body) as Echo).url : `status ${answer[0]?.status}`,
    ]);
  }
  assert.deepEqual(got, expected);
});

test('replacePrefix keeps the trailing slash of a request for the prefix itself (/r/api/ -> /v2/, as nginx and Envoy do)', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [
      {
        name: 'r',
        match: { path: '/r' },
        upstream: 'u',
        rewrite: { replacePrefix: { from: '/r/api', to: '/v2' } },
      },
    ]),
  );
  t.after(() => gw.stop());
  const got: string[] = [];
  for (const path of ['/r/api', '/r/api/', '/r/api/x/'])
    got.push((await sendJson<Echo>(gw.port, path)).json.url);
  assert.deepEqual(got, ['/v2', '/v2/', '/v2/x/']);
});
