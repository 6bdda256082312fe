/**
 * The shipper's thread: drains the log ring, batches records into NDJSON by count, bytes and time,
 * compresses each batch, and hands it to the sinks. At most `maxPending` batches are in flight; past that it
 * stops draining, the ring fills, and producers drop (and count) instead of memory growing.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Batcher, type BatchLimits } from './batcher.ts';
import {
  RingMemory,
  S_BATCHES,
  S_BYTES_OUT,
  S_BYTES_RAW,
  S_CONSUMED,
  S_FILL_HIGH,
  S_SHIPPED,
  S_SINK_DROPPED,
  S_SINK_ERRORS,
} from './ring.ts';
import { type Compression, createSink, type LogBatch, type LogSink, type SinkConfig } from './sinks.ts';

/** @internal */
export interface ShipperInit {
  buffer: SharedArrayBuffer;
  sinks: SinkConfig[];
  compression: Compression;
  compressionLevel: number;
  batch: BatchLimits;
  maxPending: number;
  pollInterval: number;
}

const init = workerData as ShipperInit;
const port = parentPort!;
const ring = new RingMemory(init.buffer);
const stats = ring.shipper;

let sinks: LogSink[];
try {
  sinks = await Promise.all(init.sinks.map((c) => createSink(c)));
} catch (error) {
  port.postMessage({ type: 'failed', error });
  process.exit(1);
}

const batcher = new Batcher(ring, init.batch, init.compression, init.compressionLevel);
let pending = 0;
let settled: (() => void) | null = null;
let stopDeadline = Number.POSITIVE_INFINITY;

/** The stop deadline comes through the ring (set before the stopping flag), seen the moment stopping is. */
function noteStop(): void {
  if (stopDeadline === Number.POSITIVE_INFINITY && ring.stopping) {
    stopDeadline = Date.now() + ring.stopDeadline;
  }
}

// The port's listener is what keeps this thread alive between records (a pending Atomics.waitAsync does
// not); the stop message it receives is only a second wake-up, the deadline itself travels in the ring.
port.on('message', (msg: { type?: string }) => {
  if (msg?.type === 'reopen') {
    for (const s of sinks) void s.reopen?.().catch(() => {});
  }
  noteStop();
});

/** Batches handed to the sinks and not settled yet; each is counted exactly once, whichever way it ends. */
const inFlight = new Set<{ records: number }>();

function ship(batch: LogBatch | null): void {
  if (batch === null) return;
  const entry = { records: batch.records };
  inFlight.add(entry);
  pending++;
  stats[S_BATCHES]!++;
  stats[S_BYTES_RAW]! += batch.rawBytes;
  stats[S_BYTES_OUT]! += batch.data.length;
  Promise.all(sinks.map((s) => s.write(batch)))
    .then(
      () => {
        if (inFlight.delete(entry)) stats[S_SHIPPED]! += batch.records;
      },
      (err: unknown) => {
        if (!inFlight.delete(entry)) return;
        stats[S_SINK_DROPPED]! += batch.records;
        stats[S_SINK_ERRORS]!++;
        if (stats[S_SINK_ERRORS] === 1 || stats[S_SINK_ERRORS]! % 100 === 0) {
          process.stderr.write(
            `netloom log shipper: sink failed (${String((err as Error)?.message ?? err)}); batch dropped\n`,
          );
        }
      },
    )
    .finally(() => {
      pending--;
      const wake = settled;
      settled = null;
      wake?.();
    });
}

port.postMessage({ type: 'ready' });

/** Waits for an in-flight batch to settle, or `ms`. */
function settle(ms: number): Promise<void> {
  return new Promise<void>((r) => {
    const timer = setTimeout(r, ms);
    settled = () => {
      clearTimeout(timer);
      r();
    };
  });
}

/** How long a stop waits for a reserved record to be published before skipping it. */
const STALL_MS = 500;
let stalledSince: number | null = null;
let gaveUp = false;
for (;;) {
  noteStop();
  if (pending >= init.maxPending) {
    // Backpressure: a slow sink stops the draining, not the producers.
    if (Date.now() >= stopDeadline) {
      gaveUp = true;
      break;
    }
    await settle(init.pollInterval);
    continue;
  }
  const used = ring.used;
  if (used > stats[S_FILL_HIGH]!) stats[S_FILL_HIGH] = used;
  const n = ring.drain(batcher.visit, batcher.room);
  stats[S_CONSUMED]! += n;
  if (batcher.full || (batcher.records > 0 && Date.now() - batcher.openedAt >= init.batch.maxDelay))
    ship(batcher.take());
  if (n > 0) continue;
  if (ring.stopping) {
    // Everything reserved has been consumed: done.
    if (ring.used === 0) break;
    // A reservation still unpublished holds the rest back: once stopping has waited STALL_MS for it (or at
    // the deadline), it is skipped and counted as abandoned, and what follows it is shipped.
    stalledSince ??= Date.now();
    if (Date.now() - stalledSince >= Math.min(STALL_MS, ring.stopDeadline) || Date.now() >= stopDeadline) {
      stats[S_CONSUMED]! += ring.drain(batcher.visit, batcher.room, true);
      stalledSince = Date.now();
      if (Date.now() >= stopDeadline && ring.used !== 0) break;
      continue;
    }
  }
  const wait =
    batcher.records > 0
      ? Math.max(1, init.batch.maxDelay - (Date.now() - batcher.openedAt))
      : init.pollInterval;
  await ring.wait(Math.min(wait, ring.stopping ? 5 : init.pollInterval));
}

if (gaveUp) {
  // The sinks never caught up before the deadline: what is still in the ring or the open batch is lost, and
  // counted so (drop reports are not user records).
  let left = 0;
  ring.drain(
    (meta) => {
      if (((meta >>> 23) & 3) !== 3) left++;
    },
    Number.POSITIVE_INFINITY,
    true,
  );
  stats[S_SINK_DROPPED]! += left + batcher.userRecords;
} else {
  ship(batcher.take());
}
while (pending > 0) {
  noteStop();
  const left = stopDeadline - Date.now();
  if (left <= 0) {
    // A sink that never answers: what it holds is lost, and counted so (and never again if it settles).
    for (const entry of inFlight) stats[S_SINK_DROPPED]! += entry.records;
    inFlight.clear();
    break;
  }
  await settle(Math.min(left, 1000));
}
let closeTimer: NodeJS.Timeout | undefined;
await Promise.race([
  Promise.allSettled(sinks.map((s) => s.close())),
  new Promise((r) => {
    closeTimer = setTimeout(r, 2000); // a sink that cannot close does not keep the thread
  }),
]);
clearTimeout(closeTimer);
port.postMessage({ type: 'stopped' });
port.close();
