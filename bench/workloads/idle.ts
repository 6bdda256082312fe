// idle: RSS per idle keep-alive connection after one request each, for netloom's hello example (1 loop),
// node:http and nginx (1 worker). A C client (bench/tools/idleconns.c, on CPU 1) opens N1 connections, then
// N2 in all, each answered once and then left idle; the figure is the slope (RSS at N2 - RSS at N1) / (N2 - N1),
// which leaves out what a server allocates once (heap and arena growth, code). Rounds alternate the order.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import {
  buildTool,
  NODE,
  NODE_ARGS,
  openFileLimit,
  pinned,
  ROOT,
  type RunningServer,
  requireTools,
  rssBytes,
  startServer,
  writeResult,
} from '../harness.ts';
import { startNginx } from '../nginx.ts';

const SETTLE_MS = 2000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Contender {
  name: string;
  start(connections: number): Promise<RunningServer>;
}

/** Starts the client and resolves each `open N` line in turn. */
function client(tool: string, port: number, batches: number[], ws: boolean) {
  const [cmd, args] = pinned(1, tool, [...(ws ? ['--ws'] : []), String(port), '4', ...batches.map(String)]);
  const child: ChildProcess = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiters: ((n: number) => void)[] = [];
  let text = '';
  child.stdout!.on('data', (d: Buffer) => {
    text += d.toString();
    for (let m = /open (\d+)\n/.exec(text); m !== null; m = /open (\d+)\n/.exec(text)) {
      text = text.slice(m.index + m[0].length);
      waiters.shift()?.(Number(m[1]));
    }
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    next: () =>
      Promise.race([
        new Promise<number>((r) => waiters.push(r)),
        exited.then((code) => {
          throw new Error(`idleconns exited with ${code}`);
        }),
      ]),
    async stop() {
      child.stdin!.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export async function run(args: { rounds: number; seconds: number; connections?: number }): Promise<void> {
  requireTools(['taskset', 'nginx']);
  const contenders: Contender[] = [
    {
      name: 'netloom hello (1 loop)',
      start: () =>
        startServer('netloom', NODE, [
          ...NODE_ARGS,
          join(ROOT, 'examples/hello/main.ts'),
          '--port',
          '0',
          '--keep-alive-timeout',
          '600000',
        ]),
    },
    {
      name: 'node:http',
      start: () =>
        startServer('node:http', NODE, [
          ...NODE_ARGS,
          join(ROOT, 'bench/peers/node-http-hello.ts'),
          '0',
          '600000',
        ]),
    },
    {
      name: 'nginx (1 worker)',
      start: (connections) =>
        startNginx(
          'nginx',
          `location / { default_type text/plain; return 200 'Hello, World!'; }`,
          '',
          connections + 100,
        ),
    },
  ];
  await idleComparison(
    {
      workload: 'idle',
      what: 'keep-alive connection',
      ws: false,
      peer: 'node:http',
      target: 'netloom <= 3 KB',
    },
    contenders,
    args,
  );
}

/** What an idle comparison measures: HTTP keep-alive connections, or WebSockets (`ws`). */
export interface IdleComparison {
  workload: string;
  what: string;
  ws: boolean;
  peer: string;
  target: string;
}

/**
 * Opens N1 then N2 idle connections to each contender in alternating rounds and reports the RSS slope per
 * connection, against `peer`.
 */
export async function idleComparison(
  opts: IdleComparison,
  contenders: Contender[],
  args: { rounds: number; connections?: number },
): Promise<void> {
  const tool = buildTool('idleconns');
  // Both the server and the client hold one descriptor per connection.
  const limit = openFileLimit();
  const wanted = args.connections ?? 100_000;
  const n2 = Math.min(wanted, limit - 500);
  const n1 = Math.max(1000, Math.floor(n2 / 8));
  const notes: string[] = [];
  if (n2 < wanted)
    notes.push(
      `${wanted} connections need RLIMIT_NOFILE >= ${wanted + 500}; this machine allows ${limit}, so ${n2}`,
    );
  const perConn = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  const rounds: { round: number; contender: string; rss1: number; rss2: number; kbPerConn: number }[] = [];
  for (let round = 1; round <= args.rounds; round++) {
    const order = round % 2 === 1 ? contenders : [...contenders].reverse();
    for (const c of order) {
      const server = await c.start(n2);
      const load = client(tool, server.port, [n1, n2 - n1], opts.ws);
      try {
        await load.next();
        await sleep(SETTLE_MS);
        const rss1 = rssBytes(server.child.pid);
        await load.next();
        await sleep(SETTLE_MS);
        const rss2 = rssBytes(server.child.pid);
        const kb = (rss2 - rss1) / (n2 - n1) / 1024;
        perConn.get(c.name)!.push(kb);
        rounds.push({ round, contender: c.name, rss1, rss2, kbPerConn: kb });
        process.stderr.write(`  round ${round} ${c.name}: ${kb.toFixed(2)} KB per idle connection\n`);
      } finally {
        await load.stop();
        await server.stop();
      }
    }
  }
  const peer = median(perConn.get(opts.peer)!);
  const lines = [
    '',
    `${opts.workload} — RSS per idle ${opts.what}, ${n1} -> ${n2} connections (median of ${args.rounds} rounds)`,
    `${'server'.padEnd(26)}${'KB/conn'.padStart(10)}${`vs ${opts.peer}`.padStart(14)}`,
  ];
  const summary: Record<string, { kbPerConn: number; ratio: number }> = {};
  for (const c of contenders) {
    const kb = median(perConn.get(c.name)!);
    summary[c.name] = { kbPerConn: kb, ratio: kb / peer };
    lines.push(
      `${c.name.padEnd(26)}${kb.toFixed(2).padStart(10)}${`${(kb / peer).toFixed(2)}x`.padStart(14)}`,
    );
  }
  lines.push('', `KB/conn: (RSS at N2 - RSS at N1) / (N2 - N1); lower is better. target: ${opts.target}`);
  for (const n of notes) lines.push(n);
  console.log(lines.join('\n'));
  writeResult(opts.workload, { connections: [n1, n2], openFileLimit: limit, summary, rounds, notes });
}
