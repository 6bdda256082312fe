// logring: records/s and producer latency of netloom's log ring (file sink, gzip) against pino with a
// thread-stream transport writing the same access records to a file; 1 and 4 producer threads.
// In-process: producers, shipper and transports share this machine's two cores.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { gunzipSync } from 'node:zlib';
import { startLogShipper } from 'netloom';
import { writeResult } from '../harness.ts';

interface Round {
  impl: 'netloom' | 'pino';
  producers: number;
  offered: number;
  shipped: number;
  dropped: number;
  seconds: number;
  rate: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
  compressionRatio?: number;
}

const PRODUCER = new URL('../logring-producer.ts', import.meta.url);
/** netloom's batch encoding in the throughput rounds (LOGRING_COMPRESSION=none|gzip|zstd; pino writes plain). */
const COMPRESSION = (process.env.LOGRING_COMPRESSION ?? 'zstd') as 'none' | 'gzip' | 'zstd';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]! * 1000;
}

async function runProducers(
  n: number,
  data: (i: number) => object,
): Promise<{ count: number; latencies: number[] }> {
  const results = await Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise<{ count: number; latencies: number[] }>((resolve, reject) => {
          const w = new Worker(PRODUCER, { workerData: { ...data(i), index: i } });
          let result: { count: number; latencies: number[] } | null = null;
          w.once('message', (m: { count: number; latencies: number[] }) => {
            result = m;
          });
          w.once('error', reject);
          // Done when the thread is gone: for pino that is once its transport flushed.
          w.once('exit', (code) =>
            result !== null ? resolve(result) : reject(new Error(`producer exited with ${code}`)),
          );
        }),
    ),
  );
  return {
    count: results.reduce((a, r) => a + r.count, 0),
    latencies: results.flatMap((r) => r.latencies).sort((a, b) => a - b),
  };
}

async function netloom(producers: number, seconds: number): Promise<Round> {
  const dir = mkdtempSync(join(tmpdir(), 'netloom-bench-log-'));
  const shipper = await startLogShipper({
    capacity: 64 * 1024 * 1024,
    sink: { type: 'file', path: join(dir, 'access.log') },
    compression: COMPRESSION,
    batch: { maxRecords: 4096, maxBytes: 1024 * 1024 },
  });
  const started = performance.now();
  const { count, latencies } = await runProducers(producers, () => ({
    mode: 'netloom',
    ring: shipper.ring,
    seconds,
  }));
  const stats = await shipper.stop(60_000);
  const elapsed = (performance.now() - started) / 1000;
  rmSync(dir, { recursive: true, force: true });
  return {
    impl: 'netloom',
    producers,
    offered: count,
    shipped: stats.shipped,
    dropped: stats.dropped.full + stats.dropped.sink,
    seconds: elapsed,
    rate: stats.shipped / elapsed,
    p50_us: percentile(latencies, 0.5),
    p99_us: percentile(latencies, 0.99),
    max_us: percentile(latencies, 1),
    compressionRatio: stats.compressionRatio,
  };
}

async function pinoRound(producers: number, seconds: number): Promise<Round> {
  const dir = mkdtempSync(join(tmpdir(), 'netloom-bench-pino-'));
  const started = performance.now();
  const { count, latencies } = await runProducers(producers, (i) => ({
    mode: 'pino',
    file: join(dir, `p${i}.log`),
    seconds,
  }));
  const elapsed = (performance.now() - started) / 1000;
  let lines = 0;
  for (let i = 0; i < producers; i++) {
    const text = readFileSync(join(dir, `p${i}.log`), 'utf8');
    for (let k = text.indexOf('\n'); k !== -1; k = text.indexOf('\n', k + 1)) lines++;
  }
  rmSync(dir, { recursive: true, force: true });
  return {
    impl: 'pino',
    producers,
    offered: count,
    shipped: lines,
    dropped: count - lines,
    seconds: elapsed,
    rate: lines / elapsed,
    p50_us: percentile(latencies, 0.5),
    p99_us: percentile(latencies, 0.99),
    max_us: percentile(latencies, 1),
  };
}

/** The compression ratio of a realistic access log, measured on its own (as shipped: batches of 4096). */
async function accessLogRatio(compression: 'gzip' | 'zstd'): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'netloom-bench-ratio-'));
  const path = join(dir, 'access.log');
  const shipper = await startLogShipper({
    sink: { type: 'file', path },
    compression,
    capacity: 64 * 1024 * 1024,
    batch: { maxRecords: 4096, maxBytes: 1024 * 1024 },
  });
  await runProducers(1, () => ({ mode: 'netloom', ring: shipper.ring, seconds: 0.5 }));
  const stats = await shipper.stop(60_000);
  if (compression === 'gzip' && gunzipSync(readFileSync(path)).length !== stats.bytesRaw) {
    throw new Error('the gzip file does not decode back to what was shipped');
  }
  rmSync(dir, { recursive: true, force: true });
  return stats.compressionRatio;
}

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  const rounds: Round[] = [];
  for (let r = 0; r < args.rounds; r++) {
    for (const producers of [1, 4]) {
      const pair = r % 2 === 0 ? [netloom, pinoRound] : [pinoRound, netloom];
      for (const f of pair) {
        const round = await f(producers, args.seconds);
        rounds.push(round);
        process.stderr.write(
          `  round ${r + 1} ${round.impl} x${producers}: ${Math.round(round.rate)} rec/s shipped, p99 ${round.p99_us.toFixed(1)} us, dropped ${round.dropped}\n`,
        );
      }
    }
  }
  const ratio = { gzip: await accessLogRatio('gzip'), zstd: await accessLogRatio('zstd') };
  const lines = [
    '',
    `logring (median of ${args.rounds} rounds, ${args.seconds}s of logging each; netloom ships ${COMPRESSION})`,
  ];
  lines.push(
    `${'impl'.padEnd(10)}${'threads'.padStart(8)}${'shipped/s'.padStart(12)}${'vs pino'.padStart(9)}${'p50 us'.padStart(9)}${'p99 us'.padStart(9)}${'max us'.padStart(10)}${'dropped'.padStart(10)}`,
  );
  const summary: Record<string, unknown> = {};
  for (const producers of [1, 4]) {
    const pick = (impl: string) => rounds.filter((x) => x.impl === impl && x.producers === producers);
    const pinoRate = median(pick('pino').map((x) => x.rate));
    for (const impl of ['netloom', 'pino']) {
      const rs = pick(impl);
      const row = {
        rate: median(rs.map((x) => x.rate)),
        p50_us: median(rs.map((x) => x.p50_us)),
        p99_us: median(rs.map((x) => x.p99_us)),
        max_us: median(rs.map((x) => x.max_us)),
        dropped: median(rs.map((x) => x.dropped)),
      };
      summary[`${impl} x${producers}`] = { ...row, ratio: row.rate / pinoRate };
      lines.push(
        `${impl.padEnd(10)}${String(producers).padStart(8)}${String(Math.round(row.rate)).padStart(12)}${`${(row.rate / pinoRate).toFixed(2)}x`.padStart(9)}${row.p50_us.toFixed(1).padStart(9)}${row.p99_us.toFixed(1).padStart(9)}${row.max_us.toFixed(0).padStart(10)}${String(row.dropped).padStart(10)}`,
      );
    }
  }
  lines.push(
    '',
    `access-log compression ratio (NDJSON, 4096-record batches): gzip level 1 ${ratio.gzip.toFixed(1)}x, zstd ${ratio.zstd.toFixed(1)}x`,
  );
  lines.push(
    'target: >= 3x pino with producers never blocking (pino blocks when its buffer is full: see max us)',
  );
  console.log(lines.join('\n'));
  writeResult('logring', { seconds: args.seconds, summary, compressionRatio: ratio, rounds });
}
