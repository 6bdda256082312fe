// A bug in a user's onUpstreamResponse filter (it throws) is reported as the upstream's fault: the client gets
// 502 "invalid response from upstream", the completion record says error 'bad-response', and each one counts
// as a passive-health failure of the target, so a broken filter ejects healthy targets. An onRequest or
// onUpstreamRequest filter that throws is a 500 'filter-error' counted against nobody; this stage should be too.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Reports } from '../fixtures/test-harness.ts';
import { gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf, waitUntil } from '../support.ts';

const FILTERS = new URL('./filters.ts', import.meta.url);

test('a throwing onUpstreamResponse filter is a filter error, not a target failure', async (t) => {
  const a = await httpUpstream((_q, s) => s.end('a'));
  const b = await httpUpstream((_q, s) => s.end('b'));
  t.after(() => a.close());
  t.after(() => b.close());
  const reports = new Reports();
  t.after(() => reports.close());
  const gw = await startTestGateway(
    gatewayConfig(
      {
        u: upstreamOf([a.address, b.address], {
          passive: { consecutiveFailures: 2, maxEjectionPercent: 50 },
          panicThreshold: 0,
        }),
      },
      [
        {
          name: 'broken',
          match: { path: '/broken' },
          upstream: 'u',
          filters: [{ name: 'records', channel: reports.name }, { name: 'throw-on-response' }],
        },
        { name: 'ok', match: { path: '/' }, upstream: 'u' },
      ],
    ),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await send(gw.port, '/broken')).status);
  await waitUntil(() => reports.of('complete').length === 4, 3000, 'records');
  const kinds = reports.of('complete').map((e) => (e.record as { error: string }).error);
  // Healthy targets must both still answer the other route.
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) seen.add((await send(gw.port, '/ok')).text);
  assert.deepEqual(
    { statuses, kinds, targetsServing: [...seen].sort() },
    {
      statuses: [500, 500, 500, 500],
      kinds: ['filter-error', 'filter-error', 'filter-error', 'filter-error'],
      targetsServing: ['a', 'b'],
    },
  );
});

test('an onUpstreamResponse filter that answers sends its answer, and the connection stays in step', async (t) => {
  const up = await httpUpstream((_q, s) => s.end('from the upstream, not wanted'));
  t.after(() => up.close());
  const reports = new Reports();
  t.after(() => reports.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [
      {
        name: 'replaced',
        match: { path: '/replaced' },
        upstream: 'u',
        filters: [{ name: 'records', channel: reports.name }, { name: 'respond-on-response' }],
      },
      { name: 'ok', match: { path: '/' }, upstream: 'u' },
    ]),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  const { raw, responses } = await import('../../http1/support.ts');
  const out = responses(
    (
      await raw(
        gw.port,
        'GET /replaced HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /next HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n',
      )
    ).text,
  );
  assert.deepEqual(
    out.map((r) => [r.status, r.body]),
    [
      [418, '{"replaced":true}'],
      [200, 'from the upstream, not wanted'],
    ],
  );
  await waitUntil(() => reports.of('complete').length === 1, 3000, 'record');
  const record = reports.of('complete')[0]!.record as { answeredBy: string; error?: string };
  assert.equal(record.answeredBy, 'filter');
});
