// ws-proxy: WebSockets through a proxy. The netloom gateway (1 loop, a route with the default WebSocket
// limits: frame headers read, payloads passed through) against nginx (proxy_pass with the Upgrade and
// Connection fields set, as its documentation shows) and haproxy (http mode, which tunnels upgrades), all
// in front of the same upstream (netloom's ws-echo example, 1 loop, on the proxy's core); 100 WebSockets
// with one binary message in flight each, 5 B and 1 KiB, from bench/tools/tcpload.c on the other core.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHaproxy } from '../haproxy.ts';
import {
  buildTool,
  compare,
  freePort,
  NODE,
  NODE_ARGS,
  ROOT,
  requireTools,
  startServer,
} from '../harness.ts';
import { startNginx } from '../nginx.ts';
import { wsEcho } from './ws.ts';

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  requireTools(['nginx', 'haproxy']);
  const tcpload = buildTool('tcpload');
  const upstream = await startServer('upstream', NODE, [
    ...NODE_ARGS,
    join(ROOT, 'examples/ws-echo/main.ts'),
    '--port',
    '0',
    '--loops',
    '1',
  ]);
  const up = upstream.port;
  const dir = mkdtempSync(join(tmpdir(), 'netloom-bench-ws-proxy-'));
  const echo = (size: number) => wsEcho(tcpload, size, `echo through the proxy, 100 conns, ${size} B`);
  try {
    await compare({
      workload: 'ws-proxy',
      contenders: [
        {
          name: 'netloom gateway',
          start: async () => {
            const port = await freePort();
            const config = join(dir, 'gateway.json');
            writeFileSync(
              config,
              JSON.stringify({
                listeners: [{ address: `127.0.0.1:${port}`, loops: 1 }],
                upstreams: { up: { targets: [{ address: `127.0.0.1:${up}` }], retries: 0 } },
                routes: [{ name: 'ws', match: { path: '/' }, upstream: 'up' }],
              }),
            );
            return startServer(
              'netloom gateway',
              NODE,
              [...NODE_ARGS, join(ROOT, 'bin/netloom-gateway.js'), '--config', config],
              { port },
            );
          },
        },
        {
          name: 'nginx proxy',
          start: () =>
            startNginx(
              'nginx proxy',
              [
                `location / { proxy_pass http://127.0.0.1:${up}; proxy_http_version 1.1;`,
                '  proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";',
                '  proxy_read_timeout 600s; }',
              ].join('\n'),
            ),
        },
        {
          name: 'haproxy',
          start: () => startHaproxy(dir, up, ['timeout tunnel 600s']),
        },
      ],
      scenarios: [echo(5), echo(1024)],
      peer: 'nginx proxy',
      rounds: args.rounds,
      seconds: args.seconds,
      warmupSeconds: 2,
      notes: ['CPU µs/op covers the proxy only (the upstream shares its core)'],
    });
  } finally {
    await upstream.stop();
  }
}
