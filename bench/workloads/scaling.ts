// scaling: netloom's hello example with 1 loop (on CPU 0) and with 2 loops (on CPUs 0 and 1), wrk with 100
// keep-alive connections from CPU 1. On a machine of two cores the 2-loop server shares a core with wrk:
// the table says what the loops gain here, with the core count recorded, not what they gain on a big box.
import { cpus } from 'node:os';
import { join } from 'node:path';
import { compare, NODE, NODE_ARGS, ROOT, startServer } from '../harness.ts';
import { wrk } from '../wrk.ts';

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  const hello = (loops: number, cpuList: string) => {
    const name = `netloom hello (${loops} loop${loops === 1 ? '' : 's'})`;
    return {
      name,
      start: () =>
        startServer(
          name,
          NODE,
          [...NODE_ARGS, join(ROOT, 'examples/hello/main.ts'), '--port', '0', '--loops', String(loops)],
          { cpus: cpuList },
        ),
    };
  };
  await compare({
    workload: 'scaling',
    contenders: [hello(2, '0,1'), hello(1, '0')],
    scenarios: [
      { name: 'keep-alive, 100 conns', measure: (s, seconds) => wrk(s.port, { connections: 100, seconds }) },
    ],
    peer: 'netloom hello (1 loop)',
    rounds: args.rounds,
    seconds: args.seconds,
    warmupSeconds: 2,
    notes: [
      `cores: ${cpus().length}; the 2-loop server runs on CPUs 0-1 and shares CPU 1 with wrk`,
      'CPU µs/op counts both loops',
    ],
  });
}
