// h2: netloom's hello example (1 loop, HTTP/2 by prior knowledge) vs node:http2 and nginx (one worker,
// `listen ... http2`, `return 200`); h2load with 10 connections x 10 streams and 100 x 10.
import { join } from 'node:path';
import { h2load } from '../h2load.ts';
import { compare, NODE, NODE_ARGS, ROOT, type Scenario, startServer } from '../harness.ts';
import { startNginx } from '../nginx.ts';

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  const node = (name: string, script: string, extra: string[] = []) => ({
    name,
    start: () => startServer(name, NODE, [...NODE_ARGS, join(ROOT, script), ...extra]),
  });
  const scenarios: Scenario[] = [
    {
      name: '10 conns x 10 streams',
      measure: (s, seconds) => h2load(s.port, { connections: 10, streams: 10, seconds }),
    },
    {
      name: '100 conns x 10 streams',
      measure: (s, seconds) => h2load(s.port, { connections: 100, streams: 10, seconds }),
    },
  ];
  await compare({
    workload: 'h2',
    contenders: [
      node('netloom (1 loop)', 'examples/hello/main.ts', ['--port', '0', '--loops', '1']),
      node('node:http2', 'bench/peers/node-http2-hello.ts', ['0']),
      {
        name: 'nginx (1 worker)',
        start: () =>
          startNginx(
            'nginx (1 worker)',
            `location / { default_type text/plain; return 200 'Hello, World!'; }`,
            'http2_max_concurrent_streams 100;',
            4096,
            { http2: true },
          ),
      },
    ],
    scenarios,
    peer: 'node:http2',
    pairs: [['netloom (1 loop)', 'nginx (1 worker)']],
    rounds: args.rounds,
    seconds: args.seconds,
    warmupSeconds: 2,
    notes: ['targets: >= 2.5x node:http2 and >= 1.0x nginx (h2c prior knowledge)'],
  });
}
