// The benchmark harness: servers pinned to CPU 0, load generators to CPU 1, alternating rounds, medians and
// ratios against a peer measured in the same run, and a JSON record of every round in bench/results/.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const ROOT = dirname(BENCH_DIR);
export const SERVER_CPU = 0;
export const LOAD_CPU = 1;

/** Install hints for the tools a workload may need. */
const INSTALL: Record<string, string> = {
  taskset: 'apt-get install -y util-linux',
  wrk: 'apt-get install -y wrk',
  h2load: 'apt-get install -y nghttp2-client',
  nginx: 'apt-get install -y nginx-light',
  haproxy: 'apt-get install -y haproxy',
  cc: 'apt-get install -y build-essential',
};

export function which(tool: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = join(dir, tool);
    if (existsSync(p)) return p;
  }
  return null;
}

/** Exits with the install command of every missing tool (never skips silently). */
export function requireTools(tools: string[]): void {
  const missing = tools.filter((t) => which(t) === null);
  if (missing.length === 0) return;
  for (const t of missing) console.error(`missing: ${t} — install with: ${INSTALL[t] ?? `(install ${t})`}`);
  process.exit(2);
}

/** Compiles a C tool from bench/tools when its binary is missing or older than the source. */
export function buildTool(name: string): string {
  requireTools(['cc']);
  const src = join(BENCH_DIR, 'tools', `${name}.c`);
  const outDir = join(BENCH_DIR, '.build');
  const bin = join(outDir, name);
  mkdirSync(outDir, { recursive: true });
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    execFileSync('cc', ['-O2', '-Wall', '-o', bin, src], { stdio: 'inherit' });
  }
  return bin;
}

/** Prefixes a command with `taskset -c cpu`. */
export function pinned(cpu: number, cmd: string, args: string[]): [string, string[]] {
  return ['taskset', ['-c', String(cpu), cmd, ...args]];
}

export interface RunningServer {
  name: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Waits until something accepts TCP connections on `port`. */
export async function waitForPort(port: number, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * Starts a server pinned to the server CPU. With `port` it waits for the port; otherwise it waits for the
 * `listening P` line our examples and peers print.
 */
export async function startServer(
  name: string,
  cmd: string,
  args: string[],
  options: { port?: number; cwd?: string; env?: NodeJS.ProcessEnv; cpus?: string } = {},
): Promise<RunningServer> {
  // `cpus`: a taskset list for a server that is to use more than the server's core (the scaling table).
  const [c, a] =
    options.cpus === undefined
      ? pinned(SERVER_CPU, cmd, args)
      : ['taskset', ['-c', options.cpus, cmd, ...args]];
  const child = spawn(c, a, {
    cwd: options.cwd ?? ROOT,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let port = options.port;
  if (port === undefined) {
    port = await new Promise<number>((resolve, reject) => {
      let text = '';
      child.stdout!.on('data', (d: Buffer) => {
        text += d.toString();
        const m = /listening (\d+)/.exec(text);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code) => reject(new Error(`${name} exited with ${code} before listening`)));
    });
  } else {
    child.stdout!.resume();
    await waitForPort(port);
  }
  return {
    name,
    port,
    child,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs a load generator pinned to the load CPU and returns its stdout. */
export function runLoad(cmd: string, args: string[]): Promise<string> {
  const [c, a] = pinned(LOAD_CPU, cmd, args);
  return new Promise((resolve, reject) => {
    const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.once('exit', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} exited with ${code}: ${err || out}`));
    });
  });
}

/** Children of a process, from /proc (every thread's list). */
function children(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
}

/**
 * CPU time (user + system, in microseconds) a process and its descendants (nginx's workers, say) have used
 * so far, from /proc; -1 where unreadable.
 */
export function cpuMicros(pid: number | undefined): number {
  if (pid === undefined) return -1;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
    let total = (ticks * 1e6) / CLOCK_TICKS;
    for (const child of children(pid)) total += Math.max(0, cpuMicros(child));
    return total;
  } catch {
    return -1;
  }
}
/** Resident memory (bytes) of a process and its descendants, from /proc; -1 where unreadable. */
export function rssBytes(pid: number | undefined): number {
  if (pid === undefined) return -1;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN);
    let total = kb * 1024;
    for (const child of children(pid)) total += Math.max(0, rssBytes(child));
    return total;
  } catch {
    return -1;
  }
}

/** This process's limit on open files (RLIMIT_NOFILE, soft), from /proc. */
export function openFileLimit(): number {
  try {
    const limits = readFileSync('/proc/self/limits', 'utf8');
    return Number(/Max open files\s+(\d+)/.exec(limits)?.[1] ?? 1024);
  } catch {
    return 1024;
  }
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** One measurement: `rate` is what the table compares (requests, messages or records per second). */
export interface Sample {
  rate: number;
  [extra: string]: number | string;
}

export interface Contender {
  /** Name in the table. */
  name: string;
  /** Starts the server (pinned to CPU 0). */
  start(): Promise<RunningServer>;
}

export interface Scenario {
  /** Name of the load shape, e.g. `keep-alive` or `pipelined x16`. */
  name: string;
  /** Drives one measurement against `server`. */
  measure(server: RunningServer, seconds: number): Promise<Sample>;
}

export interface CompareOptions {
  workload: string;
  contenders: Contender[];
  scenarios: Scenario[];
  /** Name of the contender the ratios are against. */
  peer: string;
  /** Further `[contender, against]` ratios to print, for contenders doing the same work as another. */
  pairs?: [string, string][];
  rounds: number;
  seconds: number;
  warmupSeconds: number;
  notes?: string[];
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

/**
 * Starts every contender once, then for each round runs each scenario against each contender in turn
 * (netloom, peer, netloom, ... so drift hits both alike), and prints medians and ratios.
 */
export async function compare(opts: CompareOptions): Promise<void> {
  requireTools(['taskset']);
  // `--only a,b`: the contenders named (by substring) and the peer, for quick iterations.
  const only = process.env.NETLOOM_BENCH_ONLY?.split(',').filter(Boolean);
  if (only !== undefined && only.length > 0) {
    opts = {
      ...opts,
      contenders: opts.contenders.filter((c) => c.name === opts.peer || only.some((o) => c.name.includes(o))),
      pairs: (opts.pairs ?? []).filter(([a, b]) =>
        [a, b].every((n) => n === opts.peer || only.some((o) => n.includes(o))),
      ),
    };
  }
  const servers: RunningServer[] = [];
  const rounds: { round: number; scenario: string; contender: string; sample: Sample }[] = [];
  try {
    for (const c of opts.contenders) servers.push(await c.start());
    for (const scenario of opts.scenarios) {
      for (const s of servers) await scenario.measure(s, opts.warmupSeconds);
      for (let round = 1; round <= opts.rounds; round++) {
        // Alternate the order each round as well, so neither side always runs first.
        const order = round % 2 === 1 ? servers : [...servers].reverse();
        for (const s of order) {
          const cpuBefore = cpuMicros(s.child.pid);
          const sample = await scenario.measure(s, opts.seconds);
          const cpuAfter = cpuMicros(s.child.pid);
          // Server CPU per operation: steadier than throughput on a shared machine.
          if (cpuBefore >= 0 && cpuAfter >= 0 && sample.rate > 0) {
            sample.cpu_us_per_op = (cpuAfter - cpuBefore) / (sample.rate * opts.seconds);
          }
          rounds.push({ round, scenario: scenario.name, contender: s.name, sample });
          process.stderr.write(`  round ${round} ${scenario.name} ${s.name}: ${Math.round(sample.rate)}/s\n`);
        }
      }
    }
  } finally {
    for (const s of servers) await s.stop();
  }
  type Row = {
    median: number;
    min: number;
    max: number;
    ratio: number;
    roundRatio: number;
    cpuPerOp: number;
  };
  const summary: Record<string, Record<string, Row>> = {};
  const pairRatios: {
    scenario: string;
    contender: string;
    against: string;
    ratio: number;
    roundRatio: number;
  }[] = [];
  const lines: string[] = [];
  const cell = (text: string, width: number) => text.padStart(width);
  for (const scenario of opts.scenarios) {
    const ratesOf = (name: string) =>
      rounds.filter((r) => r.scenario === scenario.name && r.contender === name).map((r) => r.sample.rate);
    const peerRates = ratesOf(opts.peer);
    const peerMedian = median(peerRates);
    summary[scenario.name] = {};
    lines.push(
      '',
      `${opts.workload} — ${scenario.name} (median of ${opts.rounds} rounds, ${opts.seconds}s each)`,
    );
    lines.push(
      `${'contender'.padEnd(24)}${cell('median/s', 12)}${cell('min', 10)}${cell('max', 10)}${cell(`vs ${opts.peer}`, 16)}${cell('per-round', 11)}${cell('CPU µs/op', 11)}`,
    );
    for (const c of opts.contenders) {
      const rates = ratesOf(c.name);
      // Per-round ratios cancel slow drift of the shared machine; their median is the robust figure.
      const row: Row = {
        median: median(rates),
        min: Math.min(...rates),
        max: Math.max(...rates),
        ratio: median(rates) / peerMedian,
        roundRatio: median(rates.map((r, i) => r / peerRates[i]!)),
        cpuPerOp: median(
          rounds
            .filter((r) => r.scenario === scenario.name && r.contender === c.name)
            .map((r) => Number(r.sample.cpu_us_per_op ?? Number.NaN)),
        ),
      };
      summary[scenario.name]![c.name] = row;
      lines.push(
        `${c.name.padEnd(24)}${cell(String(Math.round(row.median)), 12)}${cell(String(Math.round(row.min)), 10)}${cell(String(Math.round(row.max)), 10)}${cell(`${row.ratio.toFixed(2)}x`, 16)}${cell(`${row.roundRatio.toFixed(2)}x`, 11)}${cell(row.cpuPerOp.toFixed(2), 11)}`,
      );
    }
    for (const [a, b] of opts.pairs ?? []) {
      const ra = ratesOf(a);
      const rb = ratesOf(b);
      const ratio = median(ra) / median(rb);
      const roundRatio = median(ra.map((r, i) => r / rb[i]!));
      pairRatios.push({ scenario: scenario.name, contender: a, against: b, ratio, roundRatio });
      lines.push(`  ${a} vs ${b}: ${ratio.toFixed(2)}x (per-round ${roundRatio.toFixed(2)}x)`);
    }
  }
  lines.push(
    '',
    'vs: ratio of the medians; per-round: median of the ratios within each round;',
    'CPU µs/op: server CPU time (user + system) per operation, median over rounds.',
  );
  for (const n of opts.notes ?? []) lines.push(n);
  console.log(lines.join('\n'));
  const out = join(BENCH_DIR, 'results', `${opts.workload}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify({ workload: opts.workload, date: new Date().toISOString(), machine: machine(), peer: opts.peer, seconds: opts.seconds, summary, pairs: pairRatios, rounds }, null, 2)}\n`,
  );
  console.log(`\nwrote ${out}`);
}

/** Writes a result record for workloads that do not go through {@link compare} (microbenchmarks). */
export function writeResult(workload: string, data: Record<string, unknown>): void {
  const out = join(BENCH_DIR, 'results', `${workload}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify({ workload, date: new Date().toISOString(), machine: machine(), ...data }, null, 2)}\n`,
  );
  console.log(`\nwrote ${out}`);
}

/** Node 24 from the devDependency, the same binary npm scripts use. */
export const NODE = process.execPath;
/** Flags every node child needs: the `netloom-source` condition maps `netloom` imports to the sources. */
export const NODE_ARGS: readonly string[] = process.execArgv.filter((a) => a.startsWith('--conditions'));
