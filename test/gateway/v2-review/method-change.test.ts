// An onUpstreamRequest filter that turns a GET into a HEAD would forward the upstream's Content-Length for a
// GET with no body behind it; switching to or from HEAD or CONNECT is refused (a 500 filter error), while
// other method changes (GET to POST) go up as asked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { raw, responses } from '../../http1/support.ts';
import { gatewayConfig, httpUpstream, startTestGateway, upstreamOf } from '../support.ts';

const FILTERS = new URL('./filters.ts', import.meta.url);

test('a filter may not switch a request to HEAD; it may switch GET to POST', async (t) => {
  const up = await httpUpstream((q, s) => s.end(`${q.method} seen`));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address]) }, [
      {
        name: 'head',
        match: { path: '/head' },
        upstream: 'u',
        filters: [{ name: 'method-changer', to: 'HEAD' }],
      },
      {
        name: 'post',
        match: { path: '/post' },
        upstream: 'u',
        filters: [{ name: 'method-changer', to: 'POST' }],
      },
    ]),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  const out = responses(
    (
      await raw(
        gw.port,
        'GET /head HTTP/1.1\r\nHost: gw.test\r\n\r\nGET /post HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n',
      )
    ).text,
  );
  assert.deepEqual(
    out.map((r) => [r.status, r.status === 200 ? r.body : '']),
    [
      [500, ''],
      [200, 'POST seen'],
    ],
  );
});
