// Issue 11, item 15: the admin endpoint is on loopback unless it has a token; with a token every request
// needs it; it answers only a Host that names it (no DNS rebinding: 421); it refuses cross-site requests
// (Origin, Sec-Fetch-Site: 403) so a page cannot post a reload; GET /config redacts header values, filter
// settings and the token.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, validateConfig } from 'netloom/gateway';
import { raw, responses } from '../http1/support.ts';
import { admin, FILTERS } from './fixtures/test-harness.ts';
import { echoHandler, gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf } from './support.ts';

const TOKEN = 'tok-0123456789abcdef-XYZ';

function withAdmin(adminSettings: Record<string, unknown>, routes: Record<string, unknown>[] = []) {
  return gatewayConfig(
    { u: upstreamOf(['127.0.0.1:1']) },
    [{ name: 'base', match: { path: '/base' }, upstream: 'u' }, ...routes],
    { admin: adminSettings },
  );
}

test('an admin endpoint off loopback without a token is refused by validation; loopback, or a token, is accepted', () => {
  for (const address of ['0.0.0.0:0', ':0', '[::]:0', 'tcp6://:0', 'tcp://0.0.0.0:0', '10.1.2.3:0', '0:0']) {
    let problems: readonly string[] = [];
    try {
      validateConfig(withAdmin({ address }));
    } catch (err) {
      assert.ok(err instanceof ConfigError, `${address}: ${String(err)}`);
      problems = err.problems;
    }
    assert.deepEqual(
      problems,
      ['admin.address: an admin endpoint off loopback needs a token (admin.token)'],
      address,
    );
  }
  for (const address of ['127.0.0.1:0', 'localhost:0', '[::1]:0'])
    assert.doesNotThrow(() => validateConfig(withAdmin({ address })), address);
  assert.doesNotThrow(() => validateConfig(withAdmin({ address: '0.0.0.0:0', token: TOKEN })));
  assert.throws(
    () => validateConfig(withAdmin({ address: '0.0.0.0:0', token: 'short' })),
    (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith('admin.token: ')),
  );
});

test('with a token: 401 without it or with a wrong one, 200 with it; a reload needs it too', async (t) => {
  const gw = await startTestGateway(withAdmin({ address: '0.0.0.0:0', token: TOKEN }));
  t.after(() => gw.stop());
  const port = gw.gateway.admin!.port;
  const denied = [
    {},
    { authorization: 'Bearer wrong-token-0123456789' },
    { authorization: `Bearer ${TOKEN}x` },
    { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
    { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` },
    { authorization: TOKEN },
    { authorization: `Bearer ${TOKEN} extra` },
    { 'x-admin-token': TOKEN },
  ];
  for (const headers of denied) {
    const r = await send(port, '/config', { headers });
    assert.equal(r.status, 401, JSON.stringify(headers));
    assert.equal(r.headers['www-authenticate'], 'Bearer realm="netloom-admin"');
    assert.ok(!r.text.includes(TOKEN));
  }
  const ok = await admin<{ version: number; config: { admin: { token: string } } }>(port, '/config', {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(ok.status, 200);
  assert.equal(ok.json.config.admin.token, '[redacted]');
  assert.ok(!ok.text.includes(TOKEN), 'the token is not in /config');

  gw.source.set(
    withAdmin({ address: '0.0.0.0:0', token: TOKEN }, [
      { name: 'new', match: { path: '/new' }, upstream: 'u' },
    ]),
  );
  assert.equal((await send(port, '/reload', { method: 'POST' })).status, 401);
  assert.equal(gw.gateway.version, 1, 'no reload without the token');
  const reload = await admin<{ ok: boolean; version: number }>(port, '/reload', {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(reload.status, 200);
  assert.deepEqual([reload.json.ok, reload.json.version], [true, 2]);
});

/** The status of GET /config with each Host (null: an HTTP/1.0 request without one). */
async function hostStatuses(
  port: number,
  hosts: [string | null, number][],
): Promise<[string | null, number][]> {
  const got: [string | null, number][] = [];
  for (const [host] of hosts) {
    const head =
      host === null
        ? 'GET /config HTTP/1.0\r\n\r\n'
        : `GET /config HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
    const answer = responses((await raw(port, head)).text);
    got.push([host, answer[0]?.status ?? 0]);
  }
  return got;
}

test('a Host that does not name the admin endpoint is answered 421 (DNS rebinding)', async (t) => {
  const gw = await startTestGateway(withAdmin({ address: '127.0.0.1:0' }));
  t.after(() => gw.stop());
  const port = gw.gateway.admin!.port;
  const expect: [string | null, number][] = [
    ['evil.example', 421],
    [`evil.example:${port}`, 421],
    [`127.0.0.1.evil.example:${port}`, 421],
    [`localhost.evil.example:${port}`, 421],
    [`127.0.0.1:${port + 1 === 65536 ? 1 : port + 1}`, 421],
    [`admin.internal:${port}`, 421],
    [null, 421],
    [`127.0.0.1:${port}`, 200],
    ['127.0.0.1', 200],
    [`localhost:${port}`, 200],
    [`LOCALHOST:${port}`, 200],
    [`[::1]:${port}`, 200],
  ];
  assert.deepEqual(await hostStatuses(port, expect), expect);
});

test('admin.hosts adds Host names the endpoint answers to, and only those', async (t) => {
  const gw = await startTestGateway(withAdmin({ address: '127.0.0.1:0', hosts: ['admin.internal'] }));
  t.after(() => gw.stop());
  const port = gw.gateway.admin!.port;
  const expect: [string | null, number][] = [
    [`admin.internal:${port}`, 200],
    ['ADMIN.internal', 200],
    [`admin.internal.evil:${port}`, 421],
    [`x.admin.internal:${port}`, 421],
    [`evil.example:${port}`, 421],
    [`127.0.0.1:${port}`, 200],
  ];
  assert.deepEqual(await hostStatuses(port, expect), expect);
});

test('POST /reload with a cross-site Origin or Sec-Fetch-Site is refused (403) and no reload happens', async (t) => {
  const base = withAdmin({ address: '127.0.0.1:0' });
  const gw = await startTestGateway(base);
  t.after(() => gw.stop());
  const port = gw.gateway.admin!.port;
  gw.source.set(
    withAdmin({ address: '127.0.0.1:0' }, [{ name: 'new', match: { path: '/new' }, upstream: 'u' }]),
  );
  const refused: Record<string, string>[] = [
    { origin: 'http://evil.example' },
    { origin: `http://evil.example:${port}` },
    { origin: 'null' },
    { origin: `https://127.0.0.1:${port}` },
    { origin: `http://127.0.0.1:${port + 1 === 65536 ? 1 : port + 1}` },
    { origin: `http://127.0.0.1.evil.example:${port}` },
    { 'sec-fetch-site': 'cross-site' },
    { 'sec-fetch-site': 'same-site' },
    { 'sec-fetch-site': 'cross-site', origin: `http://127.0.0.1:${port}` },
  ];
  for (const headers of refused) {
    const r = await send(port, '/reload', {
      method: 'POST',
      headers: { 'content-type': 'text/plain', ...headers },
    });
    assert.equal(r.status, 403, JSON.stringify(headers));
    assert.equal(gw.gateway.version, 1, `no reload for ${JSON.stringify(headers)}`);
  }
  // The same request from the endpoint's own origin (or a tool sending none) goes through.
  const same = await admin<{ ok: boolean; version: number }>(port, '/reload', {
    method: 'POST',
    headers: { origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin' },
  });
  assert.equal(same.status, 200);
  assert.deepEqual([same.json.ok, same.json.version], [true, 2]);
  assert.equal((await send(port, '/config', { headers: { 'sec-fetch-site': 'none' } })).status, 200);
});

test('GET /config (and /routes) redact header values, match values and filter settings; names stay', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const secrets = [
    'SECRET-HEADER-VALUE',
    'SECRET-RESPONSE-VALUE',
    'SECRET-MATCH-VALUE',
    'SECRET-FILTER-BODY',
  ];
  const config = gatewayConfig(
    { u: upstreamOf([up.address]) },
    [
      {
        name: 'secret',
        match: { path: '/s', headers: { 'x-tenant': 'SECRET-MATCH-VALUE' } },
        upstream: 'u',
        requestHeaders: { add: { 'x-api-key': 'SECRET-HEADER-VALUE' }, remove: ['cookie'] },
        responseHeaders: { add: { 'x-resp': 'SECRET-RESPONSE-VALUE' } },
      },
      {
        name: 'maintenance',
        match: { path: '/m' },
        upstream: 'u',
        filters: [{ name: 'respond', body: 'SECRET-FILTER-BODY' }],
      },
    ],
    { admin: { address: '127.0.0.1:0' } },
  );
  const gw = await startTestGateway(config);
  t.after(() => gw.stop());
  const port = gw.gateway.admin!.port;
  const view = await admin<{
    config: {
      routes: {
        match: { headers?: Record<string, string> };
        requestHeaders?: { add: Record<string, string>; remove: string[] };
        responseHeaders?: { add: Record<string, string> };
        filters: Record<string, unknown>[];
      }[];
    };
  }>(port, '/config');
  assert.equal(view.status, 200);
  for (const s of secrets) assert.ok(!view.text.includes(s), `/config shows ${s}`);
  const [secret, maintenance] = view.json.config.routes;
  assert.deepEqual(secret!.requestHeaders, { add: { 'x-api-key': '[redacted]' }, remove: ['cookie'] });
  assert.deepEqual(secret!.responseHeaders!.add, { 'x-resp': '[redacted]' });
  assert.deepEqual(secret!.match.headers, { 'x-tenant': '[redacted]' });
  assert.equal(maintenance!.filters[0]!.name, 'respond');
  assert.equal(maintenance!.filters[0]!.body, '[redacted]');
  for (const path of ['/routes', '/upstreams', '/stats']) {
    const r = await send(port, path);
    assert.equal(r.status, 200, path);
    for (const s of secrets) assert.ok(!r.text.includes(s), `${path} shows ${s}`);
  }
  // The running configuration still has the values: the traffic proves it.
  const answered = await send(gw.port, '/m');
  assert.equal(answered.text, 'SECRET-FILTER-BODY');
});

test("GET /config redacts a plugin filter's settings, nested ones included", async (t) => {
  const config = gatewayConfig(
    { u: upstreamOf(['127.0.0.1:1']) },
    [
      {
        name: 'secret',
        match: { path: '/s' },
        upstream: 'u',
        filters: [
          { name: 'answer', status: 200, body: 'SECRET-PLUGIN', headers: { 'x-plugin': 'SECRET-NESTED' } },
        ],
      },
    ],
    { admin: { address: '127.0.0.1:0' } },
  );
  const gw = await startTestGateway(config, { plugins: [FILTERS] });
  t.after(() => gw.stop());
  const view = await admin<{ config: { routes: { filters: Record<string, unknown>[] }[] } }>(
    gw.gateway.admin!.port,
    '/config',
  );
  assert.equal(view.status, 200);
  assert.ok(!view.text.includes('SECRET-PLUGIN') && !view.text.includes('SECRET-NESTED'), view.text);
  assert.deepEqual(view.json.config.routes[0]!.filters[0], {
    name: 'answer',
    status: '[redacted]',
    body: '[redacted]',
    headers: '[redacted]',
  });
  assert.equal((await send(gw.port, '/s')).text, 'SECRET-PLUGIN');
});

test('a token the Authorization header cannot carry (spaces) is refused by validation, or still works', async (t) => {
  const token = 'correct horse battery staple';
  const config = withAdmin({ address: '127.0.0.1:0', token });
  try {
    validateConfig(config);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.ok(
      err.problems.some((p) => p.startsWith('admin.token: ')),
      err.message,
    );
    return;
  }
  // Accepted: then the operator must be able to use it.
  const gw = await startTestGateway(config);
  t.after(() => gw.stop());
  const r = await send(gw.gateway.admin!.port, '/config', { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200, 'a configured token that can never authenticate locks the operator out');
});
