// A '#' in the request-target is not refused: `GET /admin#x` misses the /admin route (and its policies) and
// falls through to the catch-all, which sends `/admin#x` upstream. Every URL parser upstream (node's URL,
// Express's parseurl) reads that as the path /admin. RFC 9112 §3.2: origin-form has no fragment.
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

test('GET /admin#x is refused or routed as /admin, never proxied by the catch-all', async (t) => {
  const app = await httpUpstream(echoHandler('app'));
  t.after(() => app.close());
  const gw = await startTestGateway(
    gatewayConfig({ app: upstreamOf([app.address]) }, [
      // The same app behind both routes; the /admin route adds its policy header (an auth filter in real life).
      {
        name: 'admin',
        match: { path: '/admin' },
        upstream: 'app',
        requestHeaders: { add: { 'x-admin-policy': 'applied' } },
      },
      { name: 'rest', match: { path: '/' }, upstream: 'app' },
    ]),
  );
  t.after(() => gw.stop());
  // `..;` is a dot segment to servlet containers (Tomcat, Spring): `/x/..;/admin` is their `/admin`.
  for (const target of [
    '/admin#',
    '/admin#x',
    '/admin/users#/../x',
    '/x/..;/admin',
    '/x/.;/..;/admin',
    '/x/%2e%2e;y/admin',
  ]) {
    const r = responses(
      (await raw(gw.port, `GET ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n`)).text,
    )[0]!;
    assert.equal(r.status, 400, `${target}: refused, not routed`);
    const echo = JSON.parse(r.body) as Echo;
    const upstreamPath = new URL(echo.url, 'http://x').pathname; // how the app routes it
    assert.ok(
      !upstreamPath.startsWith('/admin') || echoed(echo, 'x-admin-policy') === 'applied',
      `${target}: the app served ${upstreamPath} without the /admin route's policy (upstream got ${echo.url})`,
    );
  }
});
