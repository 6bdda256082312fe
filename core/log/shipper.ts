import { extname } from 'node:path';
import { Worker } from 'node:worker_threads';
import zlib from 'node:zlib';
import type { BatchLimits } from './batcher.ts';
import { RingLogger, type SamplingOptions, setSampling } from './logger.ts';
import {
  C_COMMITTED,
  C_DROP_FULL,
  C_DROP_LARGE,
  C_DROP_LEVEL,
  C_OFFERED,
  C_SAMPLED,
  LEVELS,
  type LevelName,
  RingMemory,
  S_ABANDONED,
  S_BATCHES,
  S_BYTES_OUT,
  S_BYTES_RAW,
  S_CONSUMED,
  S_FILL_HIGH,
  S_SHIPPED,
  S_SINK_DROPPED,
  S_SINK_ERRORS,
} from './ring.ts';
import type { ShipperInit } from './shipper-worker.ts';
import type { Compression, SinkConfig } from './sinks.ts';

/** Options of {@link startLogShipper}. Every field is documented where declared. */
export interface LogShipperOptions {
  /** Ring size in bytes, a power of two (default 16 MiB). */
  capacity?: number;
  /** Where batches go: one sink or several (each gets every batch). */
  sink: SinkConfig | SinkConfig[];
  /**
   * Batch encoding. Default: zstd where node:zlib has it (Node 22.15+ / 23.8+; fastest, and the shipper's
   * CPU is what limits throughput), gzip otherwise, `none` when every sink is stdout. Choose gzip for HTTP
   * receivers that do not accept zstd.
   */
  compression?: Compression;
  /** zlib level for gzip and deflate (default 1: log shipping wants speed). */
  compressionLevel?: number;
  /** When a batch closes (count, bytes, age). */
  batch?: Partial<BatchLimits>;
  /** Batches in flight to the sinks before draining pauses (default 8). */
  maxPending?: number;
  /** How often the shipper looks at the ring when nobody rings (default 100 ms). */
  pollInterval?: number;
  /** Sampling per level and kind, and a minimum level. */
  sampling?: SamplingOptions;
}

/** Counters of the whole pipeline. `written` = `shipped` + dropped + `sampledOut` once stopped. */
export interface LogStats {
  /** Records producers offered (before sampling). */
  written: number;
  sampledOut: number;
  /** Records published into the ring. */
  committed: number;
  /**
   * Records lost, and where: the ring was full, a record was over half the ring, a sink failed or gave up,
   * or a producer reserved a record and never published it (it died, or the stop deadline came). Once
   * stopped, written = shipped + full + tooLarge + sink + abandoned + sampledOut.
   */
  dropped: {
    full: number;
    tooLarge: number;
    sink: number;
    abandoned: number;
    byLevel: Record<LevelName, number>;
  };
  /** Records the shipper took out of the ring. */
  consumed: number;
  /** Records every sink accepted. */
  shipped: number;
  batches: number;
  sinkErrors: number;
  bytesRaw: number;
  bytesCompressed: number;
  /** bytesRaw / bytesCompressed. */
  compressionRatio: number;
  ringCapacity: number;
  ringUsed: number;
  ringHighWater: number;
}

const HAS_ZSTD = typeof (zlib as { zstdCompressSync?: unknown }).zstdCompressSync === 'function';

const WORKER_URL = new URL(`./shipper-worker${extname(new URL(import.meta.url).pathname)}`, import.meta.url);

/**
 * The log pipeline's handle on the main thread: owns the ring and the shipper worker. Pass `ring` to
 * `serve({ logRing })` so every loop logs into it; `logger()` gives the main thread its own producer.
 */
export class LogShipper {
  /** The ring's shared memory. */
  readonly ring: SharedArrayBuffer;
  private readonly memory: RingMemory;
  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  private stopping: Promise<LogStats> | null = null;

  /** @internal Use {@link startLogShipper}. */
  constructor(memory: RingMemory, worker: Worker, exited: Promise<void>) {
    this.memory = memory;
    this.ring = memory.buffer;
    this.worker = worker;
    this.exited = exited;
  }

  /** A producer for the calling thread. */
  logger(loop = -1): RingLogger {
    return new RingLogger(this.memory, loop);
  }

  /**
   * Reopens the sinks' files: wire it to the signal logrotate sends after moving them (its `postrotate`).
   * A file sink also notices a moved file by itself within a second.
   */
  reopen(): void {
    if (this.stopping === null) this.worker.postMessage({ type: 'reopen' });
  }

  /** Changes sampling while running. */
  sampling(options: SamplingOptions): void {
    setSampling(this.memory, options);
  }

  stats(): LogStats {
    return readLogStats(this.memory);
  }

  /**
   * Drains every committed record to the sinks, closes them and ends the shipper. Stop producers first (stop
   * the engine): records published before this call are shipped; `deadline` bounds a sink that never answers.
   */
  stop(deadline = 10_000): Promise<LogStats> {
    if (this.stopping !== null) return this.stopping;
    this.memory.stopDeadline = deadline;
    this.memory.stopping = true;
    this.worker.postMessage({ type: 'stop' });
    // A sink that keeps handles open must not keep the shipper thread (and stop()) waiting forever.
    const kill = setTimeout(() => void this.worker.terminate(), deadline + 5000);
    kill.unref();
    this.stopping = this.exited.then(() => {
      clearTimeout(kill);
      return this.stats();
    });
    return this.stopping;
  }
}

/** Reads the pipeline's counters from the ring (any thread). */
export function readLogStats(ring: RingMemory | SharedArrayBuffer): LogStats {
  const m = ring instanceof RingMemory ? ring : new RingMemory(ring);
  const sum = (slot: number) => {
    let n = 0;
    for (let p = 0; p < m.producers; p++) n += m.counter(p, slot);
    return n;
  };
  const byLevel = {} as Record<LevelName, number>;
  LEVELS.forEach((name, l) => {
    byLevel[name] = sum(C_DROP_LEVEL + l);
  });
  const s = m.shipper;
  return {
    written: sum(C_OFFERED),
    sampledOut: sum(C_SAMPLED),
    committed: sum(C_COMMITTED),
    dropped: {
      full: sum(C_DROP_FULL),
      tooLarge: sum(C_DROP_LARGE),
      sink: s[S_SINK_DROPPED]!,
      abandoned: s[S_ABANDONED]!,
      byLevel,
    },
    consumed: s[S_CONSUMED]!,
    shipped: s[S_SHIPPED]!,
    batches: s[S_BATCHES]!,
    sinkErrors: s[S_SINK_ERRORS]!,
    bytesRaw: s[S_BYTES_RAW]!,
    bytesCompressed: s[S_BYTES_OUT]!,
    compressionRatio: s[S_BYTES_OUT]! > 0 ? s[S_BYTES_RAW]! / s[S_BYTES_OUT]! : 0,
    ringCapacity: m.capacity,
    ringUsed: m.used,
    ringHighWater: s[S_FILL_HIGH]!,
  };
}

/** Creates the ring and starts the shipper worker; resolves once its sinks are open. */
export async function startLogShipper(options: LogShipperOptions): Promise<LogShipper> {
  const memory = RingMemory.create(options.capacity ?? 16 * 1024 * 1024);
  if (options.sampling !== undefined) setSampling(memory, options.sampling);
  const sinks = Array.isArray(options.sink) ? options.sink : [options.sink];
  const init: ShipperInit = {
    buffer: memory.buffer,
    sinks,
    compression:
      options.compression ?? (sinks.every((s) => s.type === 'stdout') ? 'none' : HAS_ZSTD ? 'zstd' : 'gzip'),
    compressionLevel: options.compressionLevel ?? 1,
    batch: { maxRecords: 1000, maxBytes: 1024 * 1024, maxDelay: 200, ...options.batch },
    maxPending: options.maxPending ?? 8,
    pollInterval: options.pollInterval ?? 100,
  };
  const worker = new Worker(WORKER_URL, { workerData: init, name: 'netloom-log-shipper' });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    worker.once('message', (msg: { type: string; error?: unknown }) => {
      if (msg.type === 'ready') resolve();
      else reject(msg.error);
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`log shipper exited with code ${code} while starting`)));
  });
  return new LogShipper(memory, worker, exited);
}
