// ws-idle: RSS per idle WebSocket, for netloom's ws-echo example (1 loop) and the ws package's server: a C
// client (bench/tools/idleconns.c --ws, on CPU 1) opens N1 then N2 WebSockets over several loopback source
// addresses and leaves them idle; the figure is the slope (RSS at N2 - RSS at N1) / (N2 - N1).
import { join } from 'node:path';
import { NODE, NODE_ARGS, ROOT, requireTools, startServer } from '../harness.ts';
import { type Contender, idleComparison } from './idle.ts';

export async function run(args: { rounds: number; seconds: number; connections?: number }): Promise<void> {
  requireTools(['taskset']);
  const contenders: Contender[] = [
    {
      name: 'netloom ws-echo (1 loop)',
      start: () =>
        startServer('netloom', NODE, [...NODE_ARGS, join(ROOT, 'examples/ws-echo/main.ts'), '--port', '0']),
    },
    {
      name: 'ws',
      start: () => startServer('ws', NODE, [...NODE_ARGS, join(ROOT, 'bench/peers/ws-echo.ts'), '0']),
    },
  ];
  await idleComparison(
    { workload: 'ws-idle', what: 'WebSocket', ws: true, peer: 'ws', target: 'netloom <= 4 KB' },
    contenders,
    args,
  );
}
