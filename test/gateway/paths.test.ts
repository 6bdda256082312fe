// Issue 11, item 12: paths are normalised before routing (RFC 3986: unreserved percent-encodings decoded,
// dot segments resolved, slashes merged), so no spelling of /admin misses the /admin route and its policies
// and falls through to a catch-all; the upstream receives the normalised path; an encoded slash is refused
// (400) by default. CONNECT is only for routes that list it, and OPTIONS * is answered, never proxied.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { raw, responses } from '../http1/support.ts';
import {
  type Echo,
  echoed,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  rawUpstream,
  startTestGateway,
  upstreamOf,
} from './support.ts';

async function adminAndCatchAll(t: { after(fn: () => unknown): void }, extra: Record<string, unknown> = {}) {
  const adminUp = await httpUpstream(echoHandler('admin'));
  t.after(() => adminUp.close());
  const catchAll = await httpUpstream(echoHandler('catch-all'));
  t.after(() => catchAll.close());
  const gw = await startTestGateway(
    gatewayConfig(
      { admin: upstreamOf([adminUp.address]), rest: upstreamOf([catchAll.address]) },
      [
        {
          name: 'admin',
          match: { path: '/admin' },
          upstream: 'admin',
          requestHeaders: { add: { 'x-admin-policy': 'applied' } },
          responseHeaders: { add: { 'x-route': 'admin' } },
        },
        {
          name: 'rest',
          match: { path: '/' },
          upstream: 'rest',
          responseHeaders: { add: { 'x-route': 'rest' } },
        },
      ],
      extra,
    ),
  );
  t.after(() => gw.stop());
  return { gw, adminUp, catchAll };
}

/** One request with exactly these bytes as its target; the parsed answer. */
async function get(port: number, target: string, method = 'GET') {
  const answer = responses(
    (await raw(port, `${method} ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`)).text,
  );
  assert.equal(answer.length, 1, `one answer to ${target}`);
  return answer[0]!;
}

test('every spelling of /admin reaches the /admin route and its policies, with the normalised path', async (t) => {
  const { gw, catchAll } = await adminAndCatchAll(t);
  const cases: [string, string][] = [
    ['/admin', '/admin'],
    ['//admin', '/admin'],
    ['///admin//x', '/admin/x'],
    ['/%61dmin', '/admin'],
    ['/%61%64%6D%69%6e/x', '/admin/x'],
    ['/./admin', '/admin'],
    ['/x/../admin', '/admin'],
    ['/x/%2e%2e/admin', '/admin'],
    ['/x/%2E./admin', '/admin'],
    ['/../admin', '/admin'],
    ['/admin/./x/../y', '/admin/y'],
    ['/a/b/../../admin/x?q=1', '/admin/x?q=1'],
    ['//admin?x=/../y', '/admin?x=/../y'],
  ];
  const got: string[] = [];
  for (const [target] of cases) {
    const r = await get(gw.port, target);
    const echo = r.status === 200 ? (JSON.parse(r.body) as Echo) : null;
    got.push(
      `${target} -> ${r.status} ${r.headers['x-route']} ${echo?.name} ${echo?.url} ${echo && echoed(echo, 'x-admin-policy')}`,
    );
  }
  assert.deepEqual(
    got,
    cases.map(([target, url]) => `${target} -> 200 admin admin ${url} applied`),
  );
  assert.equal(catchAll.requests, 0, 'the catch-all never saw an /admin request');
});

test('paths that are not /admin stay on the catch-all, normalised', async (t) => {
  const { gw, adminUp } = await adminAndCatchAll(t);
  const cases: [string, string][] = [
    ['/admin/..', '/'],
    ['/admin/../x', '/x'],
    ['/administrator', '/administrator'],
    ['/%41dmin', '/Admin'],
    ['/admin%252fx', '/admin%252fx'],
    ['/adm%69n.', '/admin.'],
  ];
  const got: string[] = [];
  for (const [target] of cases) {
    const r = await get(gw.port, target);
    const echo = r.status === 200 ? (JSON.parse(r.body) as Echo) : null;
    got.push(`${target} -> ${r.status} ${echo?.name} ${echo?.url}`);
  }
  assert.deepEqual(
    got,
    cases.map(([target, url]) => `${target} -> 200 catch-all ${url}`),
  );
  assert.equal(adminUp.requests, 0);
});

test('an encoded slash is refused with 400 by default, and reaches nobody', async (t) => {
  const { gw, adminUp, catchAll } = await adminAndCatchAll(t);
  for (const target of ['/admin%2fx', '/admin%2Fx', '/x%2F..%2Fadmin', '/%2F%2Fadmin']) {
    const r = await get(gw.port, target);
    assert.equal(r.status, 400, target);
    assert.equal((JSON.parse(r.body) as { status: number }).status, 400);
  }
  for (const target of ['/admin%zz', '/admin%2', '/admin%'])
    assert.equal((await get(gw.port, target)).status, 400, target);
  assert.equal(adminUp.requests + catchAll.requests, 0);
});

test("encodedSlashes: 'keep' leaves %2F inside its segment (upper-cased), never a separator", async (t) => {
  const { gw, adminUp, catchAll } = await adminAndCatchAll(t, {
    http: { paths: { mergeSlashes: true, encodedSlashes: 'keep' } },
  });
  const r = await get(gw.port, '/x/..%2fadmin');
  assert.equal(r.status, 200);
  assert.equal((JSON.parse(r.body) as Echo).url, '/x/..%2Fadmin');
  assert.equal((JSON.parse(r.body) as Echo).name, 'catch-all');
  assert.equal(adminUp.requests, 0);
  assert.equal(catchAll.requests, 1);
});

test('CONNECT h:443 to a / prefix route without CONNECT in its methods: 405, never proxied', async (t) => {
  const up = await rawUpstream((_h, _b, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [{ name: 'all', match: { path: '/' }, upstream: 'u' }]),
  );
  t.after(() => gw.stop());
  for (const authority of ['h:443', 'internal.example:22', `127.0.0.1:${up.port}`]) {
    const answer = responses(
      (await raw(gw.port, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, 300)).text,
    );
    assert.equal(answer.length, 1, authority);
    assert.equal(answer[0]!.status, 405, authority);
    assert.equal((JSON.parse(answer[0]!.body) as { status: number }).status, 405);
  }
  assert.equal(up.connections, 0, 'no tunnel, no connection to the upstream');
  assert.equal(up.requests, 0);
});

test('OPTIONS * is answered 204 with Allow by the gateway and never proxied', async (t) => {
  const up = await rawUpstream((_h, _b, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [{ name: 'all', match: { path: '/' }, upstream: 'u' }]),
  );
  t.after(() => gw.stop());
  const r = await get(gw.port, '*', 'OPTIONS');
  assert.equal(r.status, 204);
  assert.ok(r.headers.allow?.includes('GET'), JSON.stringify(r.headers));
  assert.equal(r.body, '');
  // Only OPTIONS takes the asterisk form; another method with it reaches nobody.
  const g = await get(gw.port, '*', 'GET');
  assert.ok(g.status >= 400 && g.status < 500, `GET * -> ${g.status}`);
  assert.equal(up.connections, 0);
});

test('a raw backslash (not a pchar) never reaches a catch-all upstream that may read it as /: /x\\..\\admin is refused or routed to /admin', async (t) => {
  const { gw, catchAll } = await adminAndCatchAll(t);
  const got: string[] = [];
  for (const target of ['/x\\..\\admin', '/x/..\\admin', '/\\admin']) {
    const r = await get(gw.port, target);
    const echo = r.status === 200 ? (JSON.parse(r.body) as Echo) : null;
    got.push(`${target} -> ${echo?.name ?? r.status}`);
  }
  for (const line of got) assert.match(line, / -> (400|admin)$/);
  assert.equal(catchAll.requests, 0);
});
