// A burst of requests reaching a pool whose first connection is still dialing: every one is started on it
// before the upstream's SETTINGS say how many streams it takes. The upstream (max 2 concurrent streams)
// refuses the rest; POSTs with bodies then get 502, and GETs are sent again each on a connection of its own
// (past pool.maxConnections).
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test } from 'node:test';
import { gatewayConfig, startTestGateway } from '../support.ts';
import { h2Request, h2Upstream } from './helpers.ts';

async function setup(t: import('node:test').TestContext) {
  const up = await h2Upstream(
    (stream) => {
      stream.resume();
      stream.on('end', () =>
        setTimeout(() => {
          stream.respond({ ':status': 200 });
          stream.end('ok');
        }, 50),
      );
    },
    { settings: { maxConcurrentStreams: 2 } },
  );
  const gw = await startTestGateway(
    gatewayConfig(
      {
        h2: {
          targets: [{ address: `127.0.0.1:${up.port}` }],
          protocol: 'http2',
          pool: { maxConnections: 1, queueTimeout: 5000 },
        },
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'h2' }],
    ),
  );
  t.after(async () => {
    await gw.stop();
    await up.close();
  });
  return { up, gw };
}

test('a cold burst of POSTs on one HTTP/2 client connection: every one answered 200', async (t) => {
  const { gw, up } = await setup(t);
  const client = http2.connect(gw.url);
  t.after(() => client.close());
  await new Promise<void>((r) => client.once('connect', () => r()));
  const replies = await Promise.all(
    Array.from({ length: 6 }, (_, i) =>
      h2Request(client, { ':method': 'POST', ':path': `/p/${i}` }, `body ${i}`),
    ),
  );
  assert.deepEqual(
    replies.map((r) => `${r.status} ${r.body.slice(0, 60)}`),
    Array(6).fill('200 ok'),
    `upstream connections: ${up.sessions}`,
  );
});

test('a cold burst of GETs on one HTTP/2 client connection: pool.maxConnections 1 holds', async (t) => {
  const { gw, up } = await setup(t);
  const client = http2.connect(gw.url);
  t.after(() => client.close());
  await new Promise<void>((r) => client.once('connect', () => r()));
  const replies = await Promise.all(
    Array.from({ length: 6 }, (_, i) => h2Request(client, { ':path': `/g/${i}` })),
  );
  assert.deepEqual(
    replies.map((r) => r.status),
    Array(6).fill(200),
  );
  assert.equal(up.sessions, 1, 'upstream connections opened');
});
