// Host routing is not normalised like paths are: `Host: admin.example.com.` (the same name, fully
// qualified with its trailing dot) misses the route for host admin.example.com and its policies, and falls
// through to the any-host catch-all, which forwards the request with that Host. nginx (ngx_http_validate_host)
// and most virtual-hosting upstreams drop the trailing dot and serve admin.example.com.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { raw, responses } from '../../http1/support.ts';
import {
  type Echo,
  echoed,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  startTestGateway,
  upstreamOf,
} from '../support.ts';

test('Host: admin.example.com. is routed like admin.example.com (or refused)', async (t) => {
  const app = await httpUpstream(echoHandler('app'));
  t.after(() => app.close());
  const gw = await startTestGateway(
    gatewayConfig({ app: upstreamOf([app.address]) }, [
      {
        name: 'admin',
        match: { host: 'admin.example.com', path: '/' },
        upstream: 'app',
        requestHeaders: { add: { 'x-admin-policy': 'applied' } },
      },
      { name: 'rest', match: { path: '/' }, upstream: 'app' },
    ]),
  );
  t.after(() => gw.stop());
  for (const host of [
    'admin.example.com',
    'ADMIN.example.com:80',
    'admin.example.com.',
    'admin.example.com.:80',
  ]) {
    const r = responses(
      (await raw(gw.port, `GET /x HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)).text,
    )[0]!;
    if (r.status === 400) continue;
    const echo = JSON.parse(r.body) as Echo;
    assert.equal(
      echoed(echo, 'x-admin-policy'),
      'applied',
      `Host ${host} reached the app without the admin route (Host sent: ${echoed(echo, 'host')})`,
    );
  }
});
