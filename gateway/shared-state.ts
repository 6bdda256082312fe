/**
 * Memory the loops of one gateway share, for state that must be one budget across all of them: counters
 * and token buckets in a SharedArrayBuffer the main thread allocates, updated with Atomics (a compare-and-swap
 * loop, no lock, no message). Entries are found by name in an open-addressed table of fixed size: the first
 * loop to use a name claims its slot, the others find it.
 */

/** Slots in a gateway's table (each 32 bytes). */
export const SHARED_SLOTS = 4096;
const WORDS = 4; // per slot: key hash, kind, two data words
const KIND_COUNTER = 1n;
const KIND_BUCKET = 2n;

/** Allocates the shared memory of a gateway (main thread). */
export function createSharedMemory(slots = SHARED_SLOTS): SharedArrayBuffer {
  // One more word: the creation time, so every loop measures bucket time from the same origin.
  const buffer = new SharedArrayBuffer((slots * WORDS + 1) * 8);
  new BigInt64Array(buffer)[slots * WORDS] = BigInt(Date.now());
  return buffer;
}

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
  private readonly cells: BigInt64Array;
  private readonly slots: number;
  private readonly origin: number;

  constructor(buffer: SharedArrayBuffer) {
    this.cells = new BigInt64Array(buffer);
    this.slots = Math.floor((this.cells.length - 1) / WORDS);
    this.origin = Number(this.cells[this.slots * WORDS]);
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
      add: (n = 1) => Number(Atomics.add(cells, at, BigInt(n))) + n,
      get: () => Number(Atomics.load(cells, at)),
    };
  }

  /**
   * The token bucket named `name` (full at first). Its state is one word, milli-tokens and the time of the
   * last refill packed together, so taking is one compare-and-swap (retried only when another loop won it).
   */
  tokenBucket(name: string, rate: number, burst: number): SharedTokenBucket {
    if (!(rate > 0) || !(burst >= 1)) throw new RangeError('a token bucket needs rate > 0 and burst >= 1');
    const at = this.slot(name, KIND_BUCKET) + 2;
    const cells = this.cells;
    const cap = Math.round(burst * 1000);
    const perMs = rate; // milli-tokens per millisecond = tokens per second
    const origin = this.origin;
    // Word layout: high 32 bits the refill time (ms since the origin), low 32 bits milli-tokens + 1 (0 = new).
    const unpack = (word: bigint, now: number): number => {
      if (word === 0n) return cap;
      const t = Number(BigInt.asUintN(64, word) >> 32n);
      const milli = Number(word & 0xffffffffn) - 1;
      return Math.min(cap, milli + Math.max(0, now - t) * perMs);
    };
    const pack = (milli: number, now: number) =>
      BigInt.asIntN(64, (BigInt(now) << 32n) | BigInt(Math.floor(milli) + 1));
    return {
      take(n = 1) {
        const want = n * 1000;
        for (;;) {
          const now = Date.now() - origin;
          const word = Atomics.load(cells, at);
          const have = unpack(word, now);
          if (have < want) return false;
          if (Atomics.compareExchange(cells, at, word, pack(have - want, now)) === word) return true;
        }
      },
      available() {
        return unpack(Atomics.load(cells, at), Date.now() - origin) / 1000;
      },
    };
  }
}
