// `x-netloom-mirror: 1` is how a shadow tells a copy from live traffic (README), but the gateway does not
// own the field: a client's passes through to the live upstream, and a filter's is kept beside the
// gateway's on the copy (RouteMirror.start appends MIRROR_FIELD to the overrides without taking the
// filter's out).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type Echo,
  echoedAll,
  echoHandler,
  httpUpstream,
  send,
  sendJson,
  sleep,
  startTestGateway,
  waitUntil,
} from '../support.ts';
import { mirrored, recordingShadow } from './helpers.ts';

test('a client’s own x-netloom-mirror never reaches the live upstream', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await recordingShadow();
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(mirrored(main.address, shadow.address));
  t.after(() => gw.stop());
  // A live upstream sharing the shadow's code would take this live request for a copy (and, say, skip
  // its side effects).
  const r = await sendJson<Echo>(gw.port, '/order', { headers: { 'x-netloom-mirror': '1' } });
  assert.equal(r.status, 200);
  await waitUntil(() => shadow.seen.length === 1, 3000, 'the mirror');
  assert.equal(shadow.seen[0]!.headers['x-netloom-mirror'], '1', 'the copy is marked once');
  assert.deepEqual(echoedAll(r.json, 'x-netloom-mirror'), [], 'the live request is not marked');
});

test('a filter may not set x-netloom-mirror (the gateway owns it): the copy never gets a second value', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await recordingShadow();
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(
    mirrored(
      main.address,
      shadow.address,
      {},
      {
        filters: [{ name: 'set-header', field: 'x-netloom-mirror', value: '0' }],
      },
    ),
    { plugins: [new URL('./filters.ts', import.meta.url).href] },
  );
  t.after(() => gw.stop());
  // Like Host or X-Request-Id: a filter setting the field fails (ERR_GATEWAY_FILTER_HEADER), the request
  // is answered 500, and neither upstream sees a marker of the filter's.
  assert.equal((await send(gw.port, '/x')).status, 500);
  await sleep(150);
  assert.equal(shadow.seen.length, 0);
  // Without the filter's attempt, the copy carries the gateway's one marker.
  const plain = await startTestGateway(mirrored(main.address, shadow.address));
  t.after(() => plain.stop());
  assert.equal((await send(plain.port, '/y')).status, 200);
  await waitUntil(() => shadow.seen.length === 1, 3000, 'the mirror');
  assert.equal(shadow.seen[0]!.headers['x-netloom-mirror'], '1', 'one marker, the gateway’s');
});
