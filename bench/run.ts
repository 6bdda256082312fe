// npm run bench                      every workload in turn, then bench/results/summary.md and chart.svg
// npm run bench -- <workload> [--rounds N] [--seconds S]
// Servers run on CPU 0, load generators on CPU 1; see bench/harness.ts.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_DIR } from './harness.ts';
import { writeReport } from './report.ts';

const WORKLOADS: Record<string, string> = {
  echo: 'netloom echo vs a plain node:net echo server',
  http1: 'netloom hello vs node:http, fastify, nginx and a no-parse ceiling (wrk)',
  h2: 'netloom hello over HTTP/2 (h2c) vs node:http2 and nginx (h2load)',
  'h2-parse': 'tinybench: HPACK decode and encode, frame headers',
  h2s: 'netloom hello over HTTP/2 on TLS (ALPN h2) vs node:http2 and nginx (h2load)',
  https: 'netloom hello over TLS vs node:https and nginx: keep-alive, new and resumed handshakes',
  'http1-parse': 'tinybench: our HTTP/1.1 parser vs llhttp (small GET, browser GET, chunked POST)',
  logring: 'log ring records/s and producer latency vs pino with a thread-stream transport',
  proxy: 'netloom gateway vs nginx, haproxy, a node:http proxy and an undici proxy (wrk)',
  ws: 'netloom vs the ws package: echo (100 connections, 5 B and 1 KiB) and broadcast (10,000 subscribers)',
  'ws-proxy': 'WebSockets through the netloom gateway vs nginx and haproxy (echo upstream, 100 connections)',
  'ws-idle': 'RSS per idle WebSocket: netloom ws-echo vs the ws package (--connections N)',
  idle: 'RSS per idle keep-alive connection: netloom vs node:http and nginx (--connections N)',
  scaling: 'netloom hello with 1 and 2 loops (wrk): how throughput scales with the cores there are',
};

/** Minutes each workload took at 5 rounds of 5 s on the reference machine (before a suite has timings). */
const DEFAULT_MINUTES: Record<string, number> = {
  echo: 2,
  http1: 6,
  h2: 5,
  'h2-parse': 1,
  h2s: 5,
  https: 6,
  'http1-parse': 1,
  logring: 2,
  proxy: 9,
  ws: 5,
  'ws-proxy': 4,
  'ws-idle': 2,
  idle: 2,
  scaling: 2,
};

const TIMINGS = join(BENCH_DIR, 'results', 'suite.json');

/** Runs every workload in a child of its own (one failing does not stop the rest), then the report. */
async function suite(rounds: number, seconds: number): Promise<void> {
  const names = Object.keys(WORKLOADS);
  const past = existsSync(TIMINGS)
    ? (JSON.parse(readFileSync(TIMINGS, 'utf8')) as Record<
        string,
        { ms: number; rounds: number; seconds: number }
      >)
    : {};
  /** Expected milliseconds of a workload, scaled from its last run (or the defaults) to these rounds. */
  const expected = (w: string) => {
    const p = past[w];
    if (p !== undefined) return (p.ms * (rounds * seconds)) / (p.rounds * p.seconds);
    return (DEFAULT_MINUTES[w] ?? 3) * 60_000 * ((rounds * seconds) / 25);
  };
  const minutes = (ms: number) => `${Math.max(1, Math.round(ms / 60_000))} min`;
  const total = names.reduce((a, w) => a + expected(w), 0);
  process.stderr.write(
    `bench suite: ${names.length} workloads, ${rounds} rounds of ${seconds} s, about ${minutes(total)} (${cpus().length} cores)\n`,
  );
  const started = Date.now();
  const outcome: { workload: string; ok: boolean; ms: number }[] = [];
  for (const [i, w] of names.entries()) {
    const left = names.slice(i).reduce((a, x) => a + expected(x), 0);
    process.stderr.write(
      `\n[${i + 1}/${names.length}] ${w}: ${WORKLOADS[w]} (${minutes(Date.now() - started)} in, about ${minutes(left)} left)\n`,
    );
    const t0 = Date.now();
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(
        process.execPath,
        [...process.execArgv, process.argv[1]!, w, '--rounds', String(rounds), '--seconds', String(seconds)],
        { stdio: 'inherit' },
      );
      child.once('exit', resolve);
    });
    const ms = Date.now() - t0;
    outcome.push({ workload: w, ok: code === 0, ms });
    if (code === 0) past[w] = { ms, rounds, seconds };
    writeFileSync(TIMINGS, `${JSON.stringify(past, null, 2)}\n`);
  }
  const report = writeReport();
  process.stderr.write(`\nsuite done in ${minutes(Date.now() - started)}\n`);
  for (const o of outcome)
    process.stderr.write(`  ${o.ok ? 'ok    ' : 'FAILED'} ${o.workload} (${minutes(o.ms)})\n`);
  console.log(`wrote ${report.summary} and ${report.chart}`);
  if (outcome.some((o) => !o.ok)) process.exitCode = 1;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string' },
    /** Comma-separated substrings: only contenders whose name contains one (and the peer) run. */
    only: { type: 'string' },
    /** Lists the workloads. */
    list: { type: 'boolean', default: false },
  },
});
const workload = positionals[0];
if (values.only !== undefined) process.env.NETLOOM_BENCH_ONLY = values.only;
if (workload === undefined && !values.list) {
  await suite(Number(values.rounds), Number(values.seconds));
  process.exit();
}
if (workload === undefined || !(workload in WORKLOADS)) {
  console.error(
    'usage: npm run bench [-- --rounds N --seconds S]   (every workload, then the report)\n' +
      '       npm run bench -- <workload> [--rounds N] [--seconds S] [--connections N] [--only a,b]\n\nworkloads:',
  );
  for (const [name, what] of Object.entries(WORKLOADS)) console.error(`  ${name.padEnd(14)} ${what}`);
  process.exit(workload === undefined ? 0 : 2);
}
const mod = (await import(`./workloads/${workload}.ts`)) as {
  run(args: { rounds: number; seconds: number; connections?: number }): Promise<void>;
};
await mod.run({
  rounds: Number(values.rounds),
  seconds: Number(values.seconds),
  ...(values.connections === undefined ? {} : { connections: Number(values.connections) }),
});
