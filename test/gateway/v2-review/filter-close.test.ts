// Filters get close() once no request uses their instance: after a reload replaced their version (only when
// the requests in flight on it completed), when a prepared version is rolled back, and when the gateway stops.
// A filter that opened a timer in create used to keep it forever.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Reports } from '../fixtures/test-harness.ts';
import {
  gatewayConfig,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from '../support.ts';

const FILTERS = new URL('./filters.ts', import.meta.url);

test('close() runs after a reload, once the slow request on the old version completed; and at stop', async (t) => {
  const up = await httpUpstream((req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow'), 400);
    else res.end('ok');
  });
  t.after(() => up.close());
  const reports = new Reports();
  t.after(() => reports.close());
  const config = (tag: string) =>
    gatewayConfig({ u: upstreamOf([up.address]) }, [
      {
        name: 'all',
        match: { path: '/' },
        upstream: 'u',
        filters: [{ name: 'closable', channel: reports.name, tag }],
      },
    ]);
  const gw = await startTestGateway(config('v1'), { plugins: [FILTERS] });
  const slow = send(gw.port, '/slow');
  await sleep(100);
  gw.source.set(config('v2'));
  assert.equal((await gw.gateway.reload()).ok, true);
  await sleep(100);
  assert.deepEqual(reports.of('close'), [], 'v1 stays open while its request runs');
  assert.equal((await slow).status, 200);
  await waitUntil(() => reports.of('close').length === 1, 2000, 'v1 closed');
  assert.equal(reports.of('close')[0]!.tag, 'v1');
  assert.equal((await send(gw.port, '/')).status, 200);
  await gw.stop();
  await waitUntil(() => reports.of('close').length === 2, 2000, 'v2 closed at stop');
  assert.deepEqual(
    reports.of('close').map((e) => e.tag),
    ['v1', 'v2'],
  );
});

test('a version rolled back (one loop refuses it) closes the instances the other loops made for it', async (t) => {
  const up = await httpUpstream((_q, s) => s.end('ok'));
  t.after(() => up.close());
  const reports = new Reports();
  t.after(() => reports.close());
  const { FILTERS: HARNESS } = await import('../fixtures/test-harness.ts');
  const config = (tag: string, failOn: string[]) => ({
    listeners: [
      { address: '127.0.0.1:0', loops: 1 },
      { address: '127.0.0.1:0', loops: 1 },
    ],
    upstreams: { u: { targets: [{ address: up.address }] } },
    routes: [
      {
        name: 'r',
        match: { path: '/' },
        upstream: 'u',
        filters: [
          { name: 'closable', channel: reports.name, tag },
          ...(failOn.length > 0 ? [{ name: 'fail-create', loops: failOn }] : []),
        ],
      },
    ],
  });
  const gw = await startTestGateway(config('v1', []), { plugins: [FILTERS, HARNESS] });
  t.after(() => gw.stop());
  gw.source.set(config('v2', ['1:0']));
  assert.equal((await gw.gateway.reload()).ok, false);
  // Loop 0:0 made a v2 instance and closes it at the abort; loop 1:0 closes what it made before failing.
  await waitUntil(
    () => reports.of('close').filter((e) => e.tag === 'v2').length === 2,
    3000,
    'v2 instances closed',
  );
  assert.deepEqual(
    reports.of('close').filter((e) => e.tag === 'v1'),
    [],
    'v1 stays in force, open',
  );
  assert.equal((await send(gw.gateway.port(0), '/')).status, 200);
});
