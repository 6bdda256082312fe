// Active health checks of an HTTP/2 target go through the pool: when the pool's streams are all busy
// (pool.maxConnections reached, the upstream's SETTINGS_MAX_CONCURRENT_STREAMS in use) the check waits in
// the request queue and fails after queueTimeout, so a healthy, merely busy target is marked unhealthy and
// taken out of rotation.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { gatewayConfig, sleep, startTestGateway } from '../support.ts';
import { h2Upstream } from './helpers.ts';

test('a busy but healthy HTTP/2 target stays healthy', async (t) => {
  let checks = 0;
  const up = await h2Upstream(
    (stream, headers) => {
      if (headers[':path'] === '/health') {
        checks++;
        stream.respond({ ':status': 200 });
        stream.end('ok');
        return;
      }
      if (headers[':path'] === '/long') {
        stream.respond({ ':status': 200 });
        stream.write('working...');
        setTimeout(() => stream.end('done'), 1500);
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end('quick');
    },
    { settings: { maxConcurrentStreams: 1 } },
  );
  const gw = await startTestGateway(
    gatewayConfig(
      {
        h2: {
          targets: [{ address: `127.0.0.1:${up.port}` }],
          protocol: 'http2',
          pool: { maxConnections: 1, queueTimeout: 300 },
          healthCheck: {
            path: '/health',
            interval: 100,
            timeout: 1000,
            unhealthyThreshold: 2,
            healthyThreshold: 30,
          },
        },
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'h2' }],
    ),
  );
  t.after(async () => {
    await gw.stop();
    await up.close();
  });
  await sleep(300); // a few checks pass: the connection and its SETTINGS are known
  const before = checks;
  assert.ok(before > 0, 'health checks reached the upstream');
  const done = new Promise<string>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: gw.port, path: '/long', agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
  let markedUnhealthy = false;
  const watch = setInterval(() => {
    for (const snap of gw.gateway.snapshots())
      for (const t of snap.upstreams.h2 ?? []) if (!t.healthy) markedUnhealthy = true;
  }, 20);
  assert.equal(await done, 'working...done');
  const during = checks - before;
  // Snapshots reach the main thread once a second: watch a little longer (recovery takes 30 checks).
  await sleep(1500);
  clearInterval(watch);
  // The target answered every request and every check that reached it.
  assert.equal(
    markedUnhealthy,
    false,
    `target marked unhealthy (checks that reached it while /long ran: ${during})`,
  );
});
