import type { IoPath } from './node-internals.ts';

/**
 * Per-loop counters in shared memory. Each loop is the only writer of its own row (Atomics keep every value
 * whole); any thread may read every row at any time, which is how `engine.stats()` works without messages.
 */

const FIELDS = [
  'open',
  'accepted',
  'closed',
  'dialed',
  'bytesIn',
  'bytesOut',
  'restarts',
  'rejected',
  'writes',
  'tlsHandshakes',
  'tlsResumed',
  'tlsFailed',
  'tlsTimedOut',
  'tlsPlaintext',
] as const;
const STRIDE = 16;

/** One loop's counters. */
export interface LoopStats {
  /** Connections open now (accepted and dialed). */
  open: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Connections closed since start. */
  closed: number;
  /** Outbound connections dialed since start. */
  dialed: number;
  /** Bytes read from sockets. */
  bytesIn: number;
  /** Bytes handed to sockets. */
  bytesOut: number;
  /** Times this loop's worker was restarted after a crash. */
  restarts: number;
  /** Connections closed right after accept because the loop was at `maxConnections`. */
  rejected: number;
  /** Socket writes made (each flush of a connection's staged bytes is one `write`/`writev` call). */
  writes: number;
  /** TLS handshakes completed. */
  tlsHandshakes: number;
  /** Of those, handshakes that resumed a session (a ticket), with no full key exchange. */
  tlsResumed: number;
  /** TLS handshakes that failed (an alert, a refused name or client certificate, the peer leaving). */
  tlsFailed: number;
  /** TLS handshakes closed at `tls.handshakeTimeout`. */
  tlsTimedOut: number;
  /** Connections to a TLS listener whose first bytes were not a TLS handshake (plaintext HTTP, garbage). */
  tlsPlaintext: number;
}

/** Engine-wide counters: one row per loop and their sum, and the I/O path the loops use. */
export interface EngineStats {
  loops: LoopStats[];
  total: LoopStats;
  /** How the loops read and write (see `IoPath`). */
  io: IoPath;
}

export const OPEN = 0;
export const ACCEPTED = 1;
export const CLOSED = 2;
export const DIALED = 3;
export const BYTES_IN = 4;
export const BYTES_OUT = 5;
export const RESTARTS = 6;
export const REJECTED = 7;
export const WRITES = 8;
export const TLS_HANDSHAKES = 9;
export const TLS_RESUMED = 10;
export const TLS_FAILED = 11;
export const TLS_TIMED_OUT = 12;
export const TLS_PLAINTEXT = 13;

/** Allocates the shared block for `loops` loops. */
export function createStatsBuffer(loops: number): SharedArrayBuffer {
  return new SharedArrayBuffer(loops * STRIDE * 8);
}

/**
 * A loop's writer over its row. Connection counts are updated atomically at once; byte counts, which change
 * on every read and write, accumulate in plain fields and are published by {@link publish} (the loop calls it
 * every few milliseconds), so the hot path pays an addition, not an atomic operation.
 */
export class StatsRow {
  private readonly cells: BigInt64Array;
  private readonly base: number;
  /** Bytes read, not yet published. */
  bytesIn: number;
  /** Bytes written, not yet published. */
  bytesOut: number;
  /** Socket writes, not yet published. */
  writes: number;
  private publishedIn: number;
  private publishedOut: number;
  private publishedWrites: number;

  constructor(buffer: SharedArrayBuffer, loop: number) {
    this.cells = new BigInt64Array(buffer);
    this.base = loop * STRIDE;
    // A restarted loop continues the totals of the one it replaces.
    this.bytesIn = this.publishedIn = Number(Atomics.load(this.cells, this.base + BYTES_IN));
    this.bytesOut = this.publishedOut = Number(Atomics.load(this.cells, this.base + BYTES_OUT));
    this.writes = this.publishedWrites = Number(Atomics.load(this.cells, this.base + WRITES));
  }

  add(field: number, n: number): void {
    Atomics.add(this.cells, this.base + field, BigInt(n));
  }

  /** Makes the byte and write counts visible to other threads. */
  publish(): void {
    if (this.writes !== this.publishedWrites) {
      this.publishedWrites = this.writes;
      Atomics.store(this.cells, this.base + WRITES, BigInt(this.writes));
    }
    if (this.bytesIn !== this.publishedIn) {
      this.publishedIn = this.bytesIn;
      Atomics.store(this.cells, this.base + BYTES_IN, BigInt(this.bytesIn));
    }
    if (this.bytesOut !== this.publishedOut) {
      this.publishedOut = this.bytesOut;
      Atomics.store(this.cells, this.base + BYTES_OUT, BigInt(this.bytesOut));
    }
  }
}

/** A crashed loop's connections are gone with its thread: counts them closed (the engine's thread). */
export function settleCrashedLoop(buffer: SharedArrayBuffer, loop: number): void {
  const cells = new BigInt64Array(buffer);
  const base = loop * STRIDE;
  const lost = Atomics.exchange(cells, base + OPEN, 0n);
  Atomics.add(cells, base + CLOSED, lost);
}

/** Counts a restart of `loop`'s worker (the engine's thread). */
export function countRestart(buffer: SharedArrayBuffer, loop: number): void {
  Atomics.add(new BigInt64Array(buffer), loop * STRIDE + RESTARTS, 1n);
}

/** Reads every row; callable from any thread holding the buffer. */
export function readStats(buffer: SharedArrayBuffer, io: IoPath): EngineStats {
  const cells = new BigInt64Array(buffer);
  const loops: LoopStats[] = [];
  const total = emptyStats();
  for (let base = 0; base < cells.length; base += STRIDE) {
    const row = emptyStats();
    for (let f = 0; f < FIELDS.length; f++) {
      const v = Number(Atomics.load(cells, base + f));
      const name = FIELDS[f]!;
      row[name] = v;
      total[name] += v;
    }
    loops.push(row);
  }
  return { loops, total, io };
}

function emptyStats(): LoopStats {
  return {
    open: 0,
    accepted: 0,
    closed: 0,
    dialed: 0,
    bytesIn: 0,
    bytesOut: 0,
    restarts: 0,
    rejected: 0,
    writes: 0,
    tlsHandshakes: 0,
    tlsResumed: 0,
    tlsFailed: 0,
    tlsTimedOut: 0,
    tlsPlaintext: 0,
  };
}
