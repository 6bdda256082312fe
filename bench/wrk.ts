// wrk as a load generator: runs pinned to the load CPU and parses its summary.
import { join } from 'node:path';
import { BENCH_DIR, requireTools, runLoad, type Sample } from './harness.ts';

export interface WrkOptions {
  connections: number;
  seconds: number;
  /** A Lua script from bench/wrk (e.g. pipelining). */
  script?: string;
  path?: string;
  /** `https` for TLS servers (wrk's OpenSSL; no session resumption between its connections). */
  scheme?: 'http' | 'https';
  /** Extra request headers (`Name: value`), e.g. `Connection: close` for a new connection per request. */
  headers?: string[];
}

/** Runs wrk against `port` and returns requests/s, latency and error counts. */
export async function wrk(port: number, o: WrkOptions): Promise<Sample> {
  requireTools(['wrk']);
  const args = ['-t1', `-c${o.connections}`, `-d${o.seconds}s`, '--latency'];
  if (o.script !== undefined) args.push('-s', join(BENCH_DIR, 'wrk', o.script));
  for (const h of o.headers ?? []) args.push('-H', h);
  args.push(`${o.scheme ?? 'http'}://127.0.0.1:${port}${o.path ?? '/'}`);
  const out = await runLoad('wrk', args);
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  const p50 = /50%\s+([\d.]+)(us|ms|s)/.exec(out);
  const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(out);
  const micros = (m: RegExpExecArray | null) =>
    m === null ? Number.NaN : Number(m[1]) * (m[2] === 'us' ? 1 : m[2] === 'ms' ? 1000 : 1e6);
  if (Number.isNaN(rate)) throw new Error(`could not read wrk's output:\n${out}`);
  return { rate, non2xx, socketErrors, p50_us: micros(p50), p99_us: micros(p99) };
}
