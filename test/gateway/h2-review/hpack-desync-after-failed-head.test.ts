// A request whose upstream head cannot be sent (an onUpstreamRequest filter added an invalid field: 500, as
// for HTTP/1.1 upstreams) must not affect the other requests on the same HTTP/2 upstream connection. The
// HTTP/2 client encodes the head field by field into its HPACK dynamic table and throws half-way: the
// entries it added are never sent, and later requests on that connection reference entries the upstream
// does not have (wrong fields, or a COMPRESSION_ERROR for the whole connection).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayConfig, send, startTestGateway } from '../support.ts';
import { rawH2Upstream, T } from './helpers.ts';

const FILTERS = new URL('./filters.ts', import.meta.url);

test('a head that failed to encode leaves the HPACK context of its connection intact', async (t) => {
  const seen: { stream: number; fields?: [string, string][]; error?: string }[] = [];
  const up = await rawH2Upstream((c, f) => {
    if (f.type !== T.HEADERS) return;
    seen.push({ stream: f.stream, fields: f.fields, error: f.decodeError });
    c.headers(f.stream, [[':status', '200']], false);
    c.data(f.stream, Buffer.from(JSON.stringify(f.fields ?? f.decodeError)), true);
  });
  const gw = await startTestGateway(
    gatewayConfig(
      {
        h2: {
          targets: [{ address: `127.0.0.1:${up.port}` }],
          protocol: 'http2',
          pool: { maxConnections: 1 },
        },
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'h2', filters: [{ name: 'tenant-header' }] }],
    ),
    { plugins: [FILTERS] },
  );
  t.after(async () => {
    await gw.stop();
    await up.close();
  });
  assert.equal((await send(gw.port, '/a?alice')).status, 200);
  assert.equal((await send(gw.port, '/b?bad')).status, 500); // the buggy filter's request
  const r = await send(gw.port, '/c?carol');
  assert.equal(r.status, 200);
  const last = seen.at(-1)!;
  assert.equal(up.conns.length, 1);
  assert.equal(last.error, undefined, `the upstream could not decode the next head: ${last.error}`);
  const get = (n: string) => last.fields!.filter(([k]) => k === n).map(([, v]) => v);
  assert.deepEqual(get(':path'), ['/c?carol'], JSON.stringify(last.fields));
  assert.deepEqual(get('x-tenant'), ['tenant-carol'], JSON.stringify(last.fields));
});
