// An upstream connection that got a GOAWAY takes no new stream, but it still counts against
// pool.maxConnections while a stream it allowed runs on (a long download, a gRPC stream): new requests
// must get a new connection, not wait for the old one's last stream.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { gatewayConfig, send, sleep, startTestGateway } from '../support.ts';
import { frame, rawH2Upstream, T } from './helpers.ts';

test('after a GOAWAY that leaves a long stream running, the next request is served at once', async (t) => {
  const up = await rawH2Upstream((c, f) => {
    if (f.type !== T.HEADERS) return;
    const path = f.fields!.find(([n]) => n === ':path')![1];
    if (path === '/long') {
      c.headers(f.stream, [[':status', '200']], false);
      c.data(f.stream, Buffer.from('streaming...'), false);
      // Graceful shutdown (a reload, a max-requests limit): streams up to this one still complete.
      const g = Buffer.alloc(8);
      g.writeUInt32BE(f.stream, 0);
      c.send(frame(T.GOAWAY, 0, 0, g));
      return;
    }
    c.headers(f.stream, [[':status', '200']], false);
    c.data(f.stream, Buffer.from(`conn ${c.index}`), true);
  });
  const gw = await startTestGateway(
    gatewayConfig(
      {
        h2: {
          targets: [{ address: `127.0.0.1:${up.port}` }],
          protocol: 'http2',
          pool: { maxConnections: 1, queueTimeout: 4000 },
        },
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'h2' }],
    ),
  );
  const long = http.get({ host: '127.0.0.1', port: gw.port, path: '/long', agent: false });
  long.on('error', () => {});
  t.after(async () => {
    long.destroy();
    await gw.stop();
    await up.close();
  });
  await new Promise<void>((r) => long.on('response', () => r()));
  await sleep(100);
  const started = Date.now();
  const r = await Promise.race([send(gw.port, '/quick'), sleep(2500).then(() => null)]);
  assert.ok(
    r !== null,
    `no answer after ${Date.now() - started} ms (upstream connections: ${up.conns.length})`,
  );
  assert.equal(r.status, 200, r.text);
  assert.equal(r.text, 'conn 1');
});
