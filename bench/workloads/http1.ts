// http1: netloom's hello example (1 loop) vs node:http, fastify, nginx (one worker, `return 200`) and a
// node:net server that answers without parsing (the ceiling); wrk with 100 keep-alive connections, plain and
// pipelined x16.
import { join } from 'node:path';
import { compare, NODE, NODE_ARGS, ROOT, type Scenario, startServer } from '../harness.ts';
import { startNginx } from '../nginx.ts';
import { wrk } from '../wrk.ts';

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  const node = (name: string, script: string, extra: string[] = []) => ({
    name,
    start: () => startServer(name, NODE, [...NODE_ARGS, join(ROOT, script), ...extra]),
  });
  const scenarios: Scenario[] = [
    { name: 'keep-alive, 100 conns', measure: (s, seconds) => wrk(s.port, { connections: 100, seconds }) },
    {
      name: 'pipelined x16, 100 conns',
      measure: (s, seconds) => wrk(s.port, { connections: 100, seconds, script: 'pipeline16.lua' }),
    },
  ];
  await compare({
    workload: 'http1',
    contenders: [
      node('netloom (1 loop)', 'examples/hello/main.ts', ['--port', '0', '--loops', '1']),
      node('node:http', 'bench/peers/node-http-hello.ts', ['0']),
      node('fastify', 'bench/peers/fastify-hello.ts', ['0']),
      {
        name: 'nginx (1 worker)',
        start: () =>
          startNginx(
            'nginx (1 worker)',
            `location / { default_type text/plain; return 200 'Hello, World!'; }`,
          ),
      },
      node('no-parse ceiling', 'bench/peers/net-ceiling.ts', ['0']),
    ],
    scenarios,
    peer: 'node:http',
    rounds: args.rounds,
    seconds: args.seconds,
    warmupSeconds: 2,
    notes: [
      'targets: keep-alive >= 1.7x node:http (>= 0.85x the ceiling); pipelined >= 6x node:http and above nginx',
    ],
  });
}
