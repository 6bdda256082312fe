// npm run profile -- <workload> [--seconds N] [--out DIR]
// Starts an example server under 0x (V8's tick profiler, one loop, pinned to CPU 0), drives load against it
// from CPU 1 for N seconds, and leaves a self-contained flamegraph (flamegraph.html) and the functions with
// the most self time (top.txt) in DIR (default bench/profiles/<workload>).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import zeroEks from '0x';
import {
  BENCH_DIR,
  buildTool,
  freePort,
  LOAD_CPU,
  NODE_ARGS,
  ROOT,
  requireTools,
  SERVER_CPU,
} from './harness.ts';
import { startNginx } from './nginx.ts';

interface Workload {
  what: string;
  /** Tools the load needs. */
  tools: string[];
  /** The server's node arguments (after the netloom-source condition) and any set-up it needs. */
  prepare(port: number, dir: string): Promise<{ argv: string[]; cleanup?: () => Promise<void> }>;
  /** The load command (run on CPU 1 once the port accepts), as a shell command. */
  load(port: number, seconds: number): string;
}

const WORKLOADS: Record<string, Workload> = {
  hello: {
    what: 'examples/hello over HTTP/1.1 keep-alive (wrk, 50 connections)',
    tools: ['wrk'],
    prepare: async (port) => ({
      argv: [join(ROOT, 'examples/hello/main.ts'), '--port', String(port), '--loops', '1'],
    }),
    load: (port, s) => `wrk -t1 -c50 -d${s}s http://127.0.0.1:${port}/`,
  },
  h2: {
    what: 'examples/hello over HTTP/2 by prior knowledge (h2load, 10 connections x 10 streams)',
    tools: ['h2load'],
    prepare: async (port) => ({
      argv: [join(ROOT, 'examples/hello/main.ts'), '--port', String(port), '--loops', '1'],
    }),
    load: (port, s) => `h2load -c10 -m10 -D${s} http://127.0.0.1:${port}/`,
  },
  echo: {
    what: 'examples/echo, TCP (100 connections, 64-byte messages, bench/tools/tcpload.c)',
    tools: ['cc'],
    prepare: async (port) => ({
      argv: [join(ROOT, 'examples/echo/main.ts'), '--port', String(port), '--loops', '1'],
    }),
    load: (port, s) => `${buildTool('tcpload')} 127.0.0.1 ${port} 100 64 ${s}`,
  },
  'ws-echo': {
    what: 'examples/ws-echo (100 WebSockets, 64-byte messages, tcpload ws mode)',
    tools: ['cc'],
    prepare: async (port) => ({
      argv: [join(ROOT, 'examples/ws-echo/main.ts'), '--port', String(port), '--loops', '1'],
    }),
    load: (port, s) => `${buildTool('tcpload')} 127.0.0.1 ${port} 100 64 ${s} ws`,
  },
  gateway: {
    what: 'the gateway (1 loop, one route) in front of nginx (wrk, 50 connections)',
    tools: ['wrk', 'nginx'],
    prepare: async (port, dir) => {
      const upstream = await startNginx(
        'upstream',
        `location / { default_type text/plain; return 200 'Hello, World!'; }`,
      );
      const config = join(dir, 'gateway.json');
      writeFileSync(
        config,
        JSON.stringify({
          listeners: [{ address: `127.0.0.1:${port}`, loops: 1 }],
          upstreams: { up: { targets: [{ address: `127.0.0.1:${upstream.port}` }] } },
          routes: [{ name: 'all', match: { path: '/' }, upstream: 'up' }],
        }),
      );
      return {
        argv: [join(ROOT, 'bin/netloom-gateway.js'), '--config', config],
        cleanup: () => upstream.stop(),
      };
    },
    load: (port, s) => `wrk -t1 -c50 -d${s}s http://127.0.0.1:${port}/`,
  },
};

// The profiled server inherits this process's CPU affinity: re-run pinned to the server's CPU.
if (process.env.NETLOOM_PROFILE_PINNED !== '1') {
  const child = spawnSync(
    'taskset',
    ['-c', String(SERVER_CPU), process.execPath, ...process.execArgv, ...process.argv.slice(1)],
    {
      stdio: 'inherit',
      env: { ...process.env, NETLOOM_PROFILE_PINNED: '1' },
    },
  );
  process.exit(child.status ?? 1);
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { seconds: { type: 'string', default: '10' }, out: { type: 'string' } },
});
const name = positionals[0];
const workload = name === undefined ? undefined : WORKLOADS[name];
if (workload === undefined) {
  console.error('usage: npm run profile -- <workload> [--seconds N] [--out DIR]\n\nworkloads:');
  for (const [n, w] of Object.entries(WORKLOADS)) console.error(`  ${n.padEnd(9)} ${w.what}`);
  process.exit(name === undefined ? 0 : 2);
}
const seconds = Number(values.seconds);
if (!Number.isInteger(seconds) || seconds < 1) {
  console.error('--seconds takes a whole number of seconds');
  process.exit(2);
}
requireTools(['taskset', ...workload.tools]);
const out = values.out ?? join(BENCH_DIR, 'profiles', name!);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const port = await freePort();
const { argv, cleanup } = await workload.prepare(port, out);
// 0x runs its command when the server first listens (which may be another socket): wait for ours.
const waitForPort = `for i in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/${port}) 2>/dev/null && break; sleep 0.05; done`;
const load = `taskset -c ${LOAD_CPU} ${workload.load(port, seconds)}`;
process.stderr.write(`profiling ${name} for ${seconds} s: ${workload.what}\n`);
let loadOutput = '';
try {
  // 0x spawns this very node (Node 24 from the devDependency), on CPU 0 like every bench server.
  await zeroEks({
    argv: [...NODE_ARGS, ...argv],
    workingDir: ROOT,
    outputDir: out,
    onPort: `bash -c '${waitForPort}; ${load} > ${join(out, 'load.txt')} 2>&1'`,
    open: false,
    title: `netloom ${name}`,
    pathToNodeBinary: process.execPath,
  });
  loadOutput = readFileSync(join(out, 'load.txt'), 'utf8');
} finally {
  await cleanup?.();
}

// ---- top self time, from 0x's processed tick log --------------------------------------------------------

interface TickLog {
  code: { name: string; type: string }[];
  ticks: { s: number[] }[];
}
const logFile = readdirSync(out).find((f) => f.endsWith('-v8.log.json'));
if (logFile === undefined) throw new Error(`0x left no processed tick log in ${out}`);
const log = JSON.parse(readFileSync(join(out, logFile), 'utf8')) as TickLog;
const total = log.ticks.length;
const self = new Map<string, number>();
const byKind = new Map<string, number>();
const ours = /\/(core|protocols|gateway)\/[^:]*\.(ts|js):/;
for (const t of log.ticks) {
  const leaf = t.s[0]!;
  const code = leaf >= 0 ? log.code[leaf] : undefined;
  const frame = code === undefined ? '(unresolved native frame)' : code.name.trim();
  self.set(frame, (self.get(frame) ?? 0) + 1);
  const kind =
    code === undefined
      ? 'native (unresolved)'
      : code.type === 'JS'
        ? ours.test(code.name)
          ? 'netloom JavaScript'
          : 'other JavaScript (node internals, dependencies)'
        : code.type === 'SHARED_LIB' || code.type === 'CPP'
          ? 'native: syscalls, libc, Node and V8 C++'
          : `V8 ${code.type.toLowerCase()} (builtins, inline caches, GC)`;
  byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
}
const pct = (n: number) => `${((n / total) * 100).toFixed(1).padStart(5)}%`;
const short = (frame: string) => frame.replace(`file://${ROOT}/`, '').replace(`${ROOT}/`, '');
const sorted = [...self].sort((a, b) => b[1] - a[1]);
const lines = [
  `netloom profile: ${name} (${workload.what}), ${seconds} s, ${total} ticks`,
  `server pinned to CPU ${SERVER_CPU}, load to CPU ${LOAD_CPU}; 0x (V8 --prof)`,
  '',
  'load:',
  ...loadOutput
    .split('\n')
    .filter((l) => /Requests\/sec|requests in|finished in|"rate"/.test(l))
    .map((l) => `  ${l.trim()}`),
  '',
  'self time by kind:',
  ...[...byKind].sort((a, b) => b[1] - a[1]).map(([k, n]) => `  ${pct(n)}  ${k}`),
  '',
  'top self time, all frames:',
  ...sorted.slice(0, 25).map(([f, n]) => `  ${pct(n)}  ${short(f)}`),
  '',
  "top self time, netloom's own functions:",
  ...sorted
    .filter(([f]) => ours.test(f))
    .slice(0, 25)
    .map(([f, n]) => `  ${pct(n)}  ${short(f)}`),
  '',
];
writeFileSync(join(out, 'top.txt'), lines.join('\n'));
// The raw tick logs are large (tens of MB); the flamegraph holds what they had.
for (const f of readdirSync(out)) if (f.startsWith('isolate-')) rmSync(join(out, f));
console.log(lines.join('\n'));
console.log(`flamegraph: ${relative(process.cwd(), join(out, 'flamegraph.html'))}`);
console.log(`top:        ${relative(process.cwd(), join(out, 'top.txt'))}`);
