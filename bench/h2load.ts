// h2load (Debian's nghttp2-client) as an HTTP/2 load generator: pinned to the load CPU, its summary parsed.
import { requireTools, runLoad, type Sample } from './harness.ts';

export interface H2loadOptions {
  /** Client connections. */
  connections: number;
  /** Concurrent streams per connection (`-m`). */
  streams: number;
  seconds: number;
  path?: string;
  scheme?: 'http' | 'https';
}

/** Runs h2load against `port` for `seconds` and returns requests/s and the failures it saw. */
export async function h2load(port: number, o: H2loadOptions): Promise<Sample> {
  requireTools(['h2load']);
  const args = ['-t1', `-c${o.connections}`, `-m${o.streams}`, '-D', String(o.seconds), '--warm-up-time=1'];
  args.push(`${o.scheme ?? 'http'}://127.0.0.1:${port}${o.path ?? '/'}`);
  const out = await runLoad('h2load', args);
  const rate = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? Number.NaN);
  const req =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
      out,
    );
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  if (Number.isNaN(rate) || req === null) throw new Error(`could not read h2load's output:\n${out}`);
  const non2xx = codes === null ? 0 : Number(codes[2]) + Number(codes[3]) + Number(codes[4]);
  return { rate, failed: Number(req[5]) + Number(req[6]), non2xx };
}
