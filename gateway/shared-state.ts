/**
 * Memory the loops of one gateway share, for state that must be one budget across all of them: counters
 * and token buckets in a SharedArrayBuffer the main thread allocates, updated with Atomics (a compare-and-swap
 * loop, no lock, no message). Entries are found by name in an open-addressed table of fixed size: the first
 * loop to use a name claims its slot, the others find it.
 */

import { createKeyTable, SharedKeyTable } from './shared-keys.ts';

/** Slots in a gateway's table (each 32 bytes). */
export const SHARED_SLOTS = 4096;
const WORDS = 4; // per slot: key hash, kind, two data words
const KIND_COUNTER = 1n;
const KIND_BUCKET = 2n;

/** Allocates the shared memory of a gateway (main thread). */
export function createSharedMemory(slots = SHARED_SLOTS): SharedArrayBuffer {
  // One more word: the creation time, so every loop measures bucket time from the same origin.
  const buffer = new SharedArrayBuffer((slots * WORDS + 1) * 8);
  new Float64Array(buffer)[slots * WORDS] = monotonicMs();
  return buffer;
}

/**
 * Milliseconds on a clock every thread of the process reads alike and wall-clock steps do not move once a
 * thread runs (its time origin plus its monotonic clock).
 */
function monotonicMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Reinterprets a word's bits as a float64 and back (one thread at a time: no await in between). */
const scratchFloat = new Float64Array(1);
const scratchBits = new BigInt64Array(scratchFloat.buffer);

/** FNV-1a, 64 bits (never 0: 0 marks an empty slot). */
function hash64(name: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < name.length; i++) {
    h ^= BigInt(name.charCodeAt(i));
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return BigInt.asIntN(64, h === 0n ? 1n : h);
}

/** A counter every loop adds to. */
export interface SharedCounter {
  add(n?: number): number;
  get(): number;
}

/** A token bucket every loop takes from: `rate` tokens a second, at most `burst` saved up. */
export interface SharedTokenBucket {
  /** Takes `n` tokens if there are that many; false (and nothing taken) if not. */
  take(n?: number): boolean;
  /** Tokens available now (fractional). */
  available(): number;
}

/** The view of a gateway's shared memory one thread uses. */
export class SharedState {
  /** Per-key limiter state (rate limits by client, app key...), bounded, shared by every loop. */
  readonly keys: SharedKeyTable;
  private readonly cells: BigInt64Array;
  private readonly slots: number;
  private readonly origin: number;

  /**
   * `keys`: the key table's memory (a small one of this view's own when not given); `loop`: the
   * gateway-wide number of the loop this view runs on (its places in flight are journaled), or -1.
   */
  constructor(buffer: SharedArrayBuffer, keys: SharedArrayBuffer = createKeyTable(1024), loop = -1) {
    this.keys = new SharedKeyTable(keys, loop);
    this.cells = new BigInt64Array(buffer);
    this.slots = Math.floor((this.cells.length - 1) / WORDS);
    this.origin = new Float64Array(buffer)[this.slots * WORDS]!;
  }

  /** The slot of `name` (claimed for `kind` if new); throws when the table is full or the kind differs. */
  private slot(name: string, kind: bigint): number {
    const key = hash64(name);
    const cells = this.cells;
    let i = Number(BigInt.asUintN(64, key) % BigInt(this.slots));
    for (let probe = 0; probe < this.slots; probe++, i = (i + 1) % this.slots) {
      const at = i * WORDS;
      const found = Atomics.compareExchange(cells, at, 0n, key);
      if (found === 0n) {
        Atomics.store(cells, at + 1, kind);
        return at;
      }
      if (found === key) {
        // Claimed by another loop a moment ago: its kind may still be on its way.
        let k = Atomics.load(cells, at + 1);
        while (k === 0n) k = Atomics.load(cells, at + 1);
        if (k !== kind) throw new TypeError(`shared state "${name}" is already used as another kind`);
        return at;
      }
    }
    throw new RangeError(`the gateway's shared state is full (${this.slots} names)`);
  }

  /** The counter named `name`. */
  counter(name: string): SharedCounter {
    const at = this.slot(name, KIND_COUNTER) + 2;
    const cells = this.cells;
    return {
      add: (n = 1) => {
        if (!Number.isSafeInteger(n)) throw new RangeError(`add(n) needs an integer, got ${n}`);
        return Number(Atomics.add(cells, at, BigInt(n))) + n;
      },
      get: () => Number(Atomics.load(cells, at)),
    };
  }

  /**
   * The token bucket named `name` (full at first), kept as one word: the bucket's "theoretical arrival
   * time" (GCRA), a float64 of microseconds since the shared origin. Taking `n` tokens moves it `n / rate`
   * seconds on (from now, if it lies in the past) and is refused when that puts it more than `burst / rate`
   * ahead of now; one compare-and-swap, retried only when another loop won it. No field wraps: the clock is
   * monotonic and a float64 keeps sub-microsecond steps for centuries of uptime.
   */
  tokenBucket(name: string, rate: number, burst: number): SharedTokenBucket {
    if (!(rate > 0) || !Number.isFinite(rate) || !(burst >= 1) || !Number.isFinite(burst)) {
      throw new RangeError('a token bucket needs a finite rate > 0 and a finite burst >= 1');
    }
    const at = this.slot(name, KIND_BUCKET) + 2;
    const cells = this.cells;
    const interval = 1e6 / rate; // microseconds per token
    const tolerance = burst * interval;
    const origin = this.origin;
    const clock = () => (monotonicMs() - origin) * 1000;
    const tatOf = (word: bigint): number => {
      scratchBits[0] = word;
      return scratchFloat[0]!; // a new slot reads 0: full since the origin
    };
    const wordOf = (tat: number): bigint => {
      scratchFloat[0] = tat;
      return scratchBits[0]!;
    };
    return {
      take(n = 1) {
        if (!(n > 0) || !Number.isFinite(n)) throw new RangeError(`take(n) needs a finite n > 0, got ${n}`);
        for (;;) {
          const now = clock();
          const word = Atomics.load(cells, at);
          const next = Math.max(tatOf(word), now) + n * interval;
          if (next - now > tolerance) return false;
          if (Atomics.compareExchange(cells, at, word, wordOf(next)) === word) return true;
        }
      },
      available() {
        const now = clock();
        return Math.max(0, tolerance - (Math.max(tatOf(Atomics.load(cells, at)), now) - now)) / interval;
      },
    };
  }
}
