// ws: netloom's ws-echo example (1 loop) vs the ws package's server; 100 WebSocket connections, one binary
// message in flight each, 5 B and 1 KiB (bench/tools/tcpload.c in its `ws` mode drives them from CPU 1,
// faster than either server). Then a broadcast: examples/ws-broadcast vs ws broadcasting as its README
// does, 10,000 subscribers and one publisher with 4 messages outstanding (bench/tools/wsfanout.c); the rate
// is deliveries per second (messages x subscribers), and each round's server CPU includes accepting the
// 10,001 WebSockets (both servers alike).
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

/** 100 WebSockets with one `size`-octet binary message in flight each (tcpload's `ws` mode). */
export function wsEcho(tcpload: string, size: number, name = `echo, 100 conns, ${size} B`): Scenario {
  return {
    name,
    async measure(server, seconds) {
      const out = await runLoad(tcpload, [
        '127.0.0.1',
        String(server.port),
        '100',
        String(size),
        String(seconds),
        'ws',
      ]);
      const r = JSON.parse(out) as { rate: number; p50_us: number; p99_us: number };
      return { rate: r.rate, p50_us: r.p50_us, p99_us: r.p99_us };
    },
  };
}

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  const tcpload = buildTool('tcpload');
  const echo = (size: number) => wsEcho(tcpload, size);
  await compare({
    workload: 'ws',
    contenders: [
      {
        name: 'netloom (1 loop)',
        start: () =>
          startServer('netloom (1 loop)', NODE, [
            ...NODE_ARGS,
            join(ROOT, 'examples/ws-echo/main.ts'),
            '--port',
            '0',
            '--loops',
            '1',
          ]),
      },
      {
        name: 'ws',
        start: () => startServer('ws', NODE, [...NODE_ARGS, join(ROOT, 'bench/peers/ws-echo.ts'), '0']),
      },
    ],
    scenarios: [echo(5), echo(1024)],
    peer: 'ws',
    rounds: args.rounds,
    seconds: args.seconds,
    warmupSeconds: 2,
    notes: ['target: echo >= 1.5x ws'],
  });

  const wsfanout = buildTool('wsfanout');
  const SUBSCRIBERS = 10_000;
  const broadcast = (size: number, inflight = 4): Scenario => ({
    name: `broadcast, ${SUBSCRIBERS} subscribers, ${size} B, ${inflight} in flight`,
    async measure(server, seconds) {
      const out = await runLoad(wsfanout, [
        '127.0.0.1',
        String(server.port),
        String(SUBSCRIBERS),
        String(size),
        String(seconds),
        String(inflight),
      ]);
      const r = JSON.parse(out) as { rate: number; p50_us: number; p99_us: number; client_cpu: number };
      // The generator must not be the limit: past 90% of its core, the figure measures it, not the server.
      if (r.client_cpu > 0.9) process.stderr.write(`  warning: wsfanout used ${r.client_cpu} of its CPU\n`);
      return { rate: r.rate, p50_us: r.p50_us, p99_us: r.p99_us };
    },
  });
  await compare({
    workload: 'ws-broadcast',
    contenders: [
      {
        name: 'netloom (1 loop)',
        start: () =>
          startServer('netloom (1 loop)', NODE, [
            ...NODE_ARGS,
            join(ROOT, 'examples/ws-broadcast/main.ts'),
            '--port',
            '0',
            '--loops',
            '1',
          ]),
      },
      {
        name: 'ws',
        start: () => startServer('ws', NODE, [...NODE_ARGS, join(ROOT, 'bench/peers/ws-broadcast.ts'), '0']),
      },
    ],
    // With 4 messages outstanding a server may send several to a subscriber in one write; with 1, each
    // delivery is a write of its own.
    scenarios: [broadcast(32), broadcast(1024), broadcast(32, 1)],
    peer: 'ws',
    rounds: args.rounds,
    seconds: args.seconds,
    warmupSeconds: 2,
    notes: [
      'rate: deliveries per second (messages x subscribers); p50/p99: publish to the last subscriber',
      'target: broadcast >= 3x ws',
    ],
  });
}
