// echo: netloom's echo example (1 loop) vs a plain node:net echo server; 100 connections, 64-byte messages,
// one message in flight per connection (bench/tools/tcpload.c drives it from CPU 1).
import { join } from 'node:path';
import {
  buildTool,
  compare,
  NODE,
  NODE_ARGS,
  ROOT,
  runLoad,
  type Scenario,
  startServer,
} from '../harness.ts';

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  const tcpload = buildTool('tcpload');
  const scenario: Scenario = {
    name: '100 conns, 64 B, 1 in flight',
    async measure(server, seconds) {
      const out = await runLoad(tcpload, ['127.0.0.1', String(server.port), '100', '64', String(seconds)]);
      const r = JSON.parse(out) as { rate: number; p50_us: number; p99_us: number };
      return { rate: r.rate, p50_us: r.p50_us, p99_us: r.p99_us };
    },
  };
  await compare({
    workload: 'echo',
    contenders: [
      {
        name: 'netloom (1 loop)',
        start: () =>
          startServer('netloom (1 loop)', NODE, [
            ...NODE_ARGS,
            join(ROOT, 'examples/echo/main.ts'),
            '--port',
            '0',
            '--loops',
            '1',
          ]),
      },
      {
        name: 'node:net',
        start: () =>
          startServer('node:net', NODE, [...NODE_ARGS, join(ROOT, 'bench/peers/net-echo.ts'), '0']),
      },
    ],
    scenarios: [scenario],
    peer: 'node:net',
    rounds: args.rounds,
    seconds: args.seconds,
    warmupSeconds: 2,
    notes: ['target: netloom >= 0.95x node:net (the framework costs almost nothing)'],
  });
}
