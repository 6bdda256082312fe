// npm run bench -- <workload> [--rounds N] [--seconds S]
// Servers run on CPU 0, load generators on CPU 1; see bench/harness.ts.
import { parseArgs } from 'node:util';

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
};

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string' },
    /** Comma-separated substrings: only contenders whose name contains one (and the peer) run. */
    only: { type: 'string' },
  },
});
const workload = positionals[0];
if (values.only !== undefined) process.env.NETLOOM_BENCH_ONLY = values.only;
if (workload === undefined || !(workload in WORKLOADS)) {
  console.error(
    'usage: npm run bench -- <workload> [--rounds N] [--seconds S] [--connections N] [--only a,b]\n\nworkloads:',
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
