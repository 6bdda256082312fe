// The gateway with a log ring: access records for proxied requests, with route, domain and trace ids.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { StaticConfigSource, startGateway } from 'netloom/gateway';
import { type Echo, echoHandler, httpUpstream, send, sendJson } from './support.ts';

test('access records go through the log ring with route, domain, status and ids', async () => {
  const up = await httpUpstream(echoHandler('u'));
  const path = join(mkdtempSync(join(tmpdir(), 'netloom-gw-log-')), 'access.log');
  const gw = await startGateway({
    source: new StaticConfigSource({
      listeners: [{ address: '127.0.0.1:0' }],
      http: { accessLog: true },
      upstreams: { users: { targets: [{ address: up.address }] } },
      routes: [
        { name: 'user-api', domain: 'user', match: { path: '/api/v1/user' }, upstream: 'users' },
        {
          name: 'fixed-id',
          match: { path: '/fixed' },
          upstream: 'users',
          proxyHeaders: { requestId: false },
          requestHeaders: { add: { 'X-Request-Id': 'route-id' } },
        },
      ],
    }),
    watch: false,
    log: { sink: { type: 'file', path }, compression: 'none' },
  });
  let sentRequestId: string | undefined;
  let sentTraceparent: string | undefined;
  try {
    const trace = `00-${'1'.repeat(32)}-${'2'.repeat(16)}-01`;
    assert.equal(
      (await send(gw.port(), '/api/v1/user/7', { headers: { traceparent: trace, 'x-request-id': 'req-7' } }))
        .status,
      200,
    );
    assert.equal((await send(gw.port(), '/nowhere')).status, 404);
    // Without ids the gateway makes them: the record must carry what the upstream was sent.
    const generated = await sendJson<Echo>(gw.port(), '/api/v1/user/8');
    assert.equal(generated.status, 200);
    const upHeaders = new Map(generated.json.headers);
    sentRequestId = upHeaders.get('x-request-id');
    sentTraceparent = upHeaders.get('traceparent');
    // A route that sets its own id: the record carries that one, not the client's (which was not sent).
    const fixed = await sendJson<Echo>(gw.port(), '/fixed', { headers: { 'x-request-id': 'client-id' } });
    assert.equal(new Map(fixed.json.headers).get('x-request-id'), 'route-id');
  } finally {
    await gw.stop();
    await up.close();
  }
  const records = readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r) => r.kind === 'access');
  assert.equal(records.length, 4);
  const [ok, missing, generated, fixed] = records;
  assert.equal(fixed!.requestId, 'route-id');
  assert.deepEqual(
    [ok!.method, ok!.path, ok!.status, ok!.route, ok!.domain, ok!.traceId, ok!.requestId],
    ['GET', '/api/v1/user/7', 200, 'user-api', 'user', '1'.repeat(32), 'req-7'],
  );
  assert.deepEqual([missing!.status, missing!.route, missing!.level], [404, undefined, 'warn']);
  assert.match(sentRequestId ?? '', /^[0-9a-f-]{36}$/);
  assert.equal(generated!.requestId, sentRequestId);
  assert.equal(generated!.traceId, sentTraceparent?.split('-')[1]);
});
