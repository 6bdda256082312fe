// Issue 11, item 9 and the filter API: a filter cannot set the fields the gateway frames or writes itself
// (Content-Length, Transfer-Encoding, Host, hop-by-hop fields, the proxy's own): setHeader and friends throw
// ERR_GATEWAY_FILTER_HEADER (the request is answered 500 and never sent), and such fields pushed in
// onUpstreamRequest are dropped, so the upstream never sees a second framing header. Filters can replace
// and remove fields, answer, see the client leave (AbortSignal), and read one completion record.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { FILTERS, Reports } from './fixtures/test-harness.ts';
import {
  deadAddress,
  type Echo,
  echoedAll,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  rawUpstream,
  send,
  sendJson,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

/** A raw upstream recording each request's head (lines) and body; answers 200 "ok". */
async function recordingUpstream() {
  const seen: { lines: string[]; body: string }[] = [];
  const up = await rawUpstream((head, body, socket) => {
    seen.push({ lines: head.split('\r\n'), body: body.toString('latin1') });
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  });
  return Object.assign(up, { seen });
}

/** Values of field `name` (case-insensitive) in head lines. */
function fieldValues(lines: string[], name: string): string[] {
  return lines
    .slice(1)
    .filter((l) => l.slice(0, l.indexOf(':')).toLowerCase() === name)
    .map((l) => l.slice(l.indexOf(':') + 1).trim());
}

const OWNED = [
  'Content-Length',
  'content-length',
  'Transfer-Encoding',
  'HOST',
  'Connection',
  'Keep-Alive',
  'TE',
  'Trailer',
  'Upgrade',
  'Proxy-Connection',
  // The proxy's own fields while proxyHeaders are on (the default).
  'X-Forwarded-For',
  'Forwarded',
  'X-Request-Id',
  'traceparent',
];

test('setHeader/appendHeader/removeHeader of a field the gateway writes throw ERR_GATEWAY_FILTER_HEADER', async (t) => {
  const up = await recordingUpstream();
  t.after(() => up.close());
  const routes: Record<string, unknown>[] = [];
  const cases: string[] = [];
  for (const op of ['set', 'append', 'remove'])
    for (const name of OWNED) {
      routes.push({
        name: `r${routes.length}`,
        match: { path: `/r${routes.length}`, pathType: 'exact' },
        upstream: 'u',
        filters: [{ name: 'header-ops', report: true, ops: [{ op, name, value: '5' }] }],
      });
      cases.push(`${op} ${name}`);
    }
  const gw = await startTestGateway(gatewayConfig({ u: upstreamOf([up.address]) }, routes), {
    plugins: [FILTERS],
  });
  t.after(() => gw.stop());
  const got: string[] = [];
  for (let i = 0; i < cases.length; i++) {
    const r = await send(gw.port, `/r${i}`);
    const code = r.status === 299 ? (JSON.parse(r.text) as { code: string }).code : `status ${r.status}`;
    got.push(`${cases[i]}: ${code}`);
  }
  assert.deepEqual(
    got,
    cases.map((c) => `${c}: ERR_GATEWAY_FILTER_HEADER`),
  );
  assert.equal(up.requests, 0);
});

test('a filter that sets Content-Length, Transfer-Encoding or Host: the request is answered 500 and never sent upstream', async (t) => {
  const up = await recordingUpstream();
  t.after(() => up.close());
  const names = ['Content-Length', 'Transfer-Encoding', 'Host'];
  const gw = await startTestGateway(
    gatewayConfig(
      { u: upstreamOf([up.address]) },
      names.map((name, i) => ({
        name: `r${i}`,
        match: { path: `/r${i}` },
        upstream: 'u',
        filters: [{ name: 'header-ops', ops: [{ op: 'set', name, value: name === 'Host' ? 'evil' : '0' }] }],
      })),
    ),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  for (let i = 0; i < names.length; i++) {
    for (const body of [undefined, 'a body of 17 bytes']) {
      const r = await send(gw.port, `/r${i}`, { method: 'POST', ...(body === undefined ? {} : { body }) });
      assert.equal(r.status, 500, `${names[i]} ${body ?? ''}`);
      assert.equal((JSON.parse(r.text) as { error: string }).error, 'internal error');
    }
  }
  assert.equal(up.requests, 0);
});

test('CR, LF, NUL, DEL or a character above U+00FF in a value, or a bad name, throw ERR_GATEWAY_FILTER_HEADER', async (t) => {
  const up = await recordingUpstream();
  t.after(() => up.close());
  const bad: [string, string][] = [
    ['x-a', 'v\r\nTransfer-Encoding: chunked'],
    ['x-a', 'v\nx'],
    ['x-a', 'v\rx'],
    ['x-a', 'v\0'],
    ['x-a', 'v\x7f'],
    ['x-a', '\u0100'],
    ['x a', 'v'],
    ['x-a:', 'v'],
    ['', 'v'],
    ['x-a\r\nhost', 'v'],
  ];
  const gw = await startTestGateway(
    gatewayConfig(
      { u: upstreamOf([up.address]) },
      bad.map(([name, value], i) => ({
        name: `r${i}`,
        match: { path: `/r${i}` },
        upstream: 'u',
        filters: [{ name: 'header-ops', report: true, ops: [{ op: 'append', name, value }] }],
      })),
    ),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  for (let i = 0; i < bad.length; i++) {
    const r = await send(gw.port, `/r${i}`);
    assert.equal(r.status, 299, JSON.stringify(bad[i]));
    assert.equal((JSON.parse(r.text) as { code: string }).code, 'ERR_GATEWAY_FILTER_HEADER');
  }
  assert.equal(up.requests, 0);
});

test('framing, Host and hop-by-hop fields pushed in onUpstreamRequest are dropped: one Content-Length, our Host, the body intact', async (t) => {
  const up = await recordingUpstream();
  t.after(() => up.close());
  const pushed: [string, string][] = [
    ['Content-Length', '5'],
    ['content-length', '0'],
    ['Transfer-Encoding', 'chunked'],
    ['HOST', 'evil.example'],
    ['Connection', 'close'],
    ['Keep-Alive', 'timeout=1'],
    ['TE', 'trailers'],
    ['Upgrade', 'h2c'],
    ['x-ok', '1'],
  ];
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [
      {
        name: 'all',
        match: { path: '/' },
        upstream: 'u',
        filters: [{ name: 'mutate-upstream', add: pushed }],
      },
    ]),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  const post = await send(gw.port, '/p', { method: 'POST', body: 'hello, world' });
  assert.equal(post.status, 200);
  const get = await send(gw.port, '/g');
  assert.equal(get.status, 200);
  assert.equal(up.requests, 2);
  const [p, g] = up.seen as [(typeof up.seen)[0], (typeof up.seen)[0]];
  assert.deepEqual(fieldValues(p.lines, 'content-length'), ['12']);
  assert.deepEqual(fieldValues(p.lines, 'transfer-encoding'), []);
  assert.equal(p.body, 'hello, world');
  assert.deepEqual(fieldValues(g.lines, 'content-length'), []);
  assert.deepEqual(fieldValues(g.lines, 'transfer-encoding'), []);
  for (const seen of [p, g]) {
    assert.deepEqual(fieldValues(seen.lines, 'host'), [`127.0.0.1:${gw.port}`]);
    assert.deepEqual(fieldValues(seen.lines, 'x-ok'), ['1']);
    for (const hop of ['connection', 'keep-alive', 'te', 'upgrade'])
      assert.deepEqual(fieldValues(seen.lines, hop), [], hop);
  }
  // Both went over one pooled connection: nothing desynchronised it.
  assert.equal(up.connections, 1);
  // A chunked upload: chunked once upstream, no Content-Length (node:http refuses a message with both).
  const echo = await httpUpstream(echoHandler('echo'));
  t.after(() => echo.close());
  const gw2 = await startTestGateway(
    gatewayConfig({ u: upstreamOf([echo.address]) }, [
      {
        name: 'all',
        match: { path: '/' },
        upstream: 'u',
        filters: [{ name: 'mutate-upstream', add: pushed }],
      },
    ]),
    { plugins: [FILTERS] },
  );
  t.after(() => gw2.stop());
  const chunked = await sendJson<Echo>(gw2.port, '/c', { method: 'POST', chunks: ['abc', 'def'] });
  assert.equal(chunked.status, 200);
  assert.deepEqual(echoedAll(chunked.json, 'transfer-encoding'), ['chunked']);
  assert.deepEqual(echoedAll(chunked.json, 'content-length'), []);
  assert.equal(chunked.json.bodyLength, 6);
});

test('an onUpstreamRequest change that would break the head (CRLF in a value, a bad name, target or method) is a 500, nothing sent', async (t) => {
  const up = await recordingUpstream();
  t.after(() => up.close());
  const changes: Record<string, unknown>[] = [
    { add: [['x-inj', 'a\r\nContent-Length: 0']] },
    { add: [['x-inj', 'a\nb']] },
    { add: [['bad name', 'v']] },
    { add: [['x-inj', '\u0100']] },
    { target: '/x HTTP/1.1\r\nHost: evil\r\n\r\nGET /smuggled' },
    { target: '/a b' },
    { target: '' },
    { method: 'GET /smuggled HTTP/1.1\r\nX:' },
    { method: '' },
  ];
  const gw = await startTestGateway(
    gatewayConfig(
      { u: upstreamOf([up.address]) },
      changes
        .map((change, i) => ({
          name: `r${i}`,
          match: { path: `/r${i}` },
          upstream: 'u',
          filters: [{ name: 'mutate-upstream', ...change }],
        }))
        .concat([{ name: 'fine', match: { path: '/fine' }, upstream: 'u', filters: [] }]),
    ),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  for (let i = 0; i < changes.length; i++) {
    const r = await send(gw.port, `/r${i}`);
    assert.equal(r.status, 500, JSON.stringify(changes[i]));
  }
  assert.equal(up.requests, 0);
  // The connections those requests took go back to the pool clean: a good request on one is read as sent.
  const fine = await send(gw.port, '/fine/x');
  assert.equal(fine.status, 200);
  assert.equal(up.requests, 1);
  assert.equal(up.seen[0]!.lines[0], 'GET /fine/x HTTP/1.1');
  assert.ok(up.connections <= 1, `${up.connections} connections`);
});

for (const path of ['bytes', 'strings'] as const) {
  test(`filters replace, remove and append fields (${path} head)`, async (t) => {
    const up = await httpUpstream(echoHandler('u'));
    t.after(() => up.close());
    const filters: Record<string, unknown>[] = [
      {
        name: 'header-ops',
        ops: [
          { op: 'set', name: 'X-A', value: 'filter' },
          { op: 'remove', name: 'x-b' },
          { op: 'append', name: 'x-c', value: '2' },
          { op: 'set', name: 'x-r', value: 'filter' },
          { op: 'remove', name: 'x-gone' },
          { op: 'set', name: 'x-new', value: 'n' },
          { op: 'remove', name: 'x-d' },
          { op: 'append', name: 'x-d', value: 'after-remove' },
        ],
      },
    ];
    if (path === 'strings') filters.push({ name: 'mutate-upstream' });
    const gw = await startTestGateway(
      gatewayConfig({ u: upstreamOf([up.address]) }, [
        {
          name: 'all',
          match: { path: '/' },
          upstream: 'u',
          requestHeaders: { add: { 'x-r': 'route', 'x-gone': 'route' } },
          filters,
        },
      ]),
      { plugins: [FILTERS] },
    );
    t.after(() => gw.stop());
    const r = await sendJson<Echo>(gw.port, '/h', {
      headers: { 'x-a': 'client', 'x-b': 'client', 'x-c': '1', 'x-d': 'client' },
    });
    assert.equal(r.status, 200);
    const e = r.json;
    assert.deepEqual(echoedAll(e, 'x-a'), ['filter']);
    assert.deepEqual(echoedAll(e, 'x-b'), []);
    assert.deepEqual(echoedAll(e, 'x-c'), ['1', '2']);
    assert.deepEqual(echoedAll(e, 'x-r'), ['filter']);
    assert.deepEqual(echoedAll(e, 'x-gone'), []);
    assert.deepEqual(echoedAll(e, 'x-new'), ['n']);
    assert.deepEqual(echoedAll(e, 'x-d'), ['after-remove']);
  });
}

test('a filter answers: its status, body and headers reach the client; the upstream never sees the request', async (t) => {
  const up = await recordingUpstream();
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [
      {
        name: 'teapot',
        match: { path: '/' },
        upstream: 'u',
        filters: [{ name: 'answer', status: 418, body: 'short and stout', headers: { 'x-filter': 'yes' } }],
      },
    ]),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  const r = await send(gw.port, '/anything', { method: 'POST', body: 'ignored' });
  assert.equal(r.status, 418);
  assert.equal(r.text, 'short and stout');
  assert.equal(r.headers['x-filter'], 'yes');
  assert.equal(r.headers['content-length'], '15');
  assert.equal(up.requests, 0);
  assert.equal(up.connections, 0);
});

test('a filter waiting in onRequest gets an AbortSignal when the client leaves; nothing goes upstream', async (t) => {
  const up = await recordingUpstream();
  t.after(() => up.close());
  const reports = new Reports();
  t.after(() => reports.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [
      {
        name: 'held',
        match: { path: '/' },
        upstream: 'u',
        filters: [{ name: 'report', channel: reports.name, hold: true }],
      },
    ]),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  const socket = net.connect(gw.port, '127.0.0.1');
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.on('connect', () => resolve()));
  socket.write('GET /held HTTP/1.1\r\nHost: test\r\n\r\n');
  await sleep(150);
  assert.equal(reports.of('aborted').length, 0, 'not aborted while the client waits');
  const left = Date.now();
  // Gone for good (a reset): a FIN alone is a half-close, after which the client may still read its answer.
  socket.resetAndDestroy();
  await waitUntil(() => reports.of('aborted').length === 1, 2000, 'the abort');
  assert.ok(Date.now() - left < 1000);
  await waitUntil(() => reports.of('complete').length === 1, 2000, 'the completion record');
  const record = reports.of('complete')[0]!.record as Record<string, unknown>;
  assert.equal(record.error, 'client-gone');
  assert.equal(record.status, 0);
  // Let the filter's hold run out: the call must not go on upstream after the client left.
  await sleep(100);
  assert.equal(up.requests, 0);
  assert.equal(reports.of('complete').length, 1);
});

test('onComplete sees one record per request: route, domain, upstream, target, status, retries, error, bytes', async (t) => {
  const up = await httpUpstream((req, res) => {
    res.writeHead(200, { 'content-length': 5 });
    res.end(req.method === 'HEAD' ? undefined : 'hello');
  });
  t.after(() => up.close());
  const dead = await deadAddress();
  const reports = new Reports();
  t.after(() => reports.close());
  const report = { name: 'report', channel: reports.name };
  const gw = await startTestGateway(
    gatewayConfig({ live: upstreamOf([dead, up.address]), down: upstreamOf([dead]) }, [
      { name: 'live', domain: 'video', match: { path: '/v' }, upstream: 'live', filters: [report] },
      { name: 'down', match: { path: '/down' }, upstream: 'down', filters: [report] },
      {
        name: 'filtered',
        match: { path: '/f' },
        upstream: 'live',
        filters: [report, { name: 'answer', status: 418, body: 'no' }],
      },
    ]),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  // Round robin over [dead, live]: a request that picks the dead target first is retried on the live one
  // (a PUT too: no byte of its body was sent).
  const first = await send(gw.port, '//v/./a', { method: 'PUT', body: 'twelve bytes' });
  const second = await send(gw.port, '/v/b');
  const third = await send(gw.port, '/v/c');
  const down = await send(gw.port, '/down');
  const filtered = await send(gw.port, '/f');
  await waitUntil(() => reports.of('complete').length === 5, 2000, 'five records');
  await sleep(100);
  assert.equal(reports.of('complete').length, 5, 'one record per request');
  const records = reports.of('complete').map((e) => e.record as Record<string, unknown>);
  const pick = (r: Record<string, unknown>) => ({
    route: r.route,
    domain: r.domain,
    method: r.method,
    path: r.path,
    upstream: r.upstream,
    target: r.target,
    status: r.status,
    answeredBy: r.answeredBy,
    retries: r.retries,
    error: r.error,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
  });
  const statuses = [first, second, third, down, filtered].map((r) => r.status);
  assert.deepEqual(statuses, [200, 200, 200, 502, 418]);
  const live = records.slice(0, 3).map(pick);
  for (const [i, r] of live.entries()) {
    assert.equal(r.route, 'live');
    assert.equal(r.domain, 'video');
    assert.equal(r.upstream, 'live');
    assert.equal(r.status, statuses[i]);
    assert.equal(r.error, null);
    assert.equal(r.answeredBy, 'upstream');
    assert.equal(r.target, up.address);
    assert.equal(r.bytesOut, 5);
  }
  assert.equal(live[0]!.method, 'PUT');
  assert.equal(live[0]!.path, '/v/a', 'the normalised path');
  assert.equal(live[0]!.bytesIn, 12);
  // Which of them met the dead target first depends on the rotation: at least one did, none twice.
  const retries = live.map((r) => r.retries as number);
  assert.ok(
    retries.every((n) => n === 0 || n === 1) && retries.some((n) => n === 1),
    JSON.stringify(retries),
  );
  assert.equal(up.requests, 3);
  assert.deepEqual(pick(records[3]!), {
    route: 'down',
    domain: 'default',
    method: 'GET',
    path: '/down',
    upstream: 'down',
    target: dead,
    status: 502,
    answeredBy: 'gateway',
    retries: 0,
    error: 'connect-failed',
    bytesIn: 0,
    bytesOut: 0,
  });
  const failure = reports.of('error')[0]!.failure as Record<string, unknown>;
  assert.deepEqual({ kind: failure.kind, status: failure.status }, { kind: 'connect-failed', status: 502 });
  assert.equal(reports.of('error').length, 1);
  const f = pick(records[4]!);
  assert.equal(f.status, 418);
  assert.equal(f.answeredBy, 'filter');
  assert.equal(f.error, null);
});
