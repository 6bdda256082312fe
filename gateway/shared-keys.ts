/**
 * Per-key limiter state every loop of a gateway shares: a fixed table in a SharedArrayBuffer, so a limit
 * of 1,000 requests a second is 1,000 across all loops, and memory stays bounded however many keys (client
 * addresses, app keys) arrive. A key lives in one of `PROBE` slots from its hash; a new key takes a free
 * one, else the least recently used of them (never one with requests in flight): an eviction, counted.
 *
 * Each slot has a lock word; a loop holds it for a handful of arithmetic operations (no allocation, no
 * call out), so contention costs a few spins. The lock's Atomics operations order the plain reads and
 * writes of the slot's words between loops.
 *
 * Places in flight (`concurrency`) are also written in a journal of the loop that took them (one per loop
 * of the gateway, written by that loop alone), so that when a loop dies with requests in flight its
 * successor, or the main thread if it is not restarted, gives those places back.
 */

/** Slots of a gateway's key table: 65,536 keys (4 MiB). */
export const KEY_SLOTS = 65_536;
const SLOT_BYTES = 64;
const HEADER_BYTES = 64;
/** Slots a key may live in (from its hash on). */
const PROBE = 8;

// Int32 words of a slot (16 per slot).
const LOCK = 0;
const KEY_A = 1;
const KEY_B = 2;
const IN_USE = 3;
// Float64 words of a slot (8 per slot; the first two overlap the Int32 words above).
const LAST_USED = 2;
const W0 = 3;
const W1 = 4;
const W2 = 5;
const IN_FLIGHT = 6;
/** A lease's refill: until when a loop is fetching the next one (0: nobody). */
const REFILL = 7;
// Header: float64 0 is the time origin; int32 2 counts evictions; int32 3 is the insert lock; int32 4
// the slots, 5 the journals.
const EVICTIONS = 2;
const INSERTING = 3;
const H_SLOTS = 4;
const H_JOURNALS = 5;

/** Loops of a gateway (over all its listeners) whose places in flight are journaled. */
export const JOURNALS = 64;
/**
 * Keys a loop's journal holds at once (distinct keys with places in flight on that loop; past them a
 * place is not journaled, and would stay taken if the loop crashed).
 */
const JOURNAL_KEYS = 1024;
// Int32 words of a journal entry: the key and its places in flight here (0: the entry is empty). Open
// addressing from the key's hash, deletions shifting the entries behind back (no tombstones).
const J_A = 0;
const J_B = 1;
const J_COUNT = 2;
const JOURNAL_ENTRY = 4;

/** Allocates a key table (main thread): `slots` keys, and a journal for each of `journals` loops. */
export function createKeyTable(slots = KEY_SLOTS, journals = JOURNALS): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(
    HEADER_BYTES + slots * SLOT_BYTES + journals * JOURNAL_KEYS * JOURNAL_ENTRY * 4,
  );
  new Float64Array(buffer)[0] = performance.timeOrigin + performance.now();
  const head = new Int32Array(buffer, 0, HEADER_BYTES / 4);
  head[H_SLOTS] = slots;
  head[H_JOURNALS] = journals;
  return buffer;
}

/** The Int32 words of a table's header, from a view of its slots. */
function header32(slots: Int32Array): Int32Array {
  return new Int32Array(slots.buffer, 0, HEADER_BYTES / 4);
}

/** A key's 64-bit identity: two 32-bit FNV-1a hashes with different offset bases. */
export interface KeyHash {
  a: number;
  b: number;
}

/** Continues FNV-1a hashes `from` over `text` (UTF-16 code units), into `out`. */
export function hashKey(from: KeyHash, text: string, out: KeyHash): KeyHash {
  let a = from.a;
  let b = from.b;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193);
  }
  out.a = a | 0;
  out.b = b | 0;
  return out;
}

/** The hashes of nothing yet. */
export const KEY_SEED: Readonly<KeyHash> = { a: 0x811c9dc5 | 0, b: 0x050c5d1f };

/** {@link SharedKeyTable.leaseTake}: no token here; ask the store. */
export const LEASE_EMPTY = 0;
/** {@link SharedKeyTable.leaseTake}: one token taken from the lease. */
export const LEASE_TAKEN = 1;
/** {@link SharedKeyTable.leaseTake}: the store refused a moment ago; refuse without asking. */
export const LEASE_DENIED = 2;

/** What a limiter decided (one object per thread, overwritten by the next call). */
export interface LimitOutcome {
  allowed: boolean;
  /** Requests still allowed now. */
  remaining: number;
  /** Milliseconds until the limit is whole again (for `RateLimit`'s `t`). */
  resetMs: number;
  /** When refused: milliseconds until one request would be allowed (for `Retry-After`). */
  retryMs: number;
  /** The key had no slot (every candidate busy with requests in flight): allowed, not counted. */
  untracked: boolean;
  /** `acquire`: the place was written in this loop's journal (give it back to `release`). */
  journaled: boolean;
}

/**
 * Milliseconds until a sliding window admits one more request, `into` (0-1) the current window with
 * `previous` and `current` counted: within this window once the previous one's weight has fallen enough,
 * else in the next, where this window's count is the one that falls.
 */
function slidingRetry(
  previous: number,
  current: number,
  limit: number,
  into: number,
  windowMs: number,
): number {
  const room = limit - 1 - current; // what the previous window's weighted share may be
  if (room >= 0 && previous > 0) {
    const at = 1 - room / previous; // previous * (1 - f) <= room
    if (at <= 1) return Math.max(0, (at - into) * windowMs);
  }
  // Next window: current * (1 - f') + 1 <= limit.
  const at = current > 0 ? Math.max(0, 1 - (limit - 1) / current) : 0;
  return (1 - into + at) * windowMs;
}

/** One thread's view of a key table. */
export class SharedKeyTable {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  /** The header's Int32 words (evictions, the insert lock). */
  private readonly header: Int32Array;
  /** Keys the table holds at most. */
  readonly slots: number;
  private readonly origin: number;
  private readonly outcome: LimitOutcome = {
    allowed: true,
    remaining: 0,
    resetMs: 0,
    retryMs: 0,
    untracked: false,
    journaled: false,
  };

  /** This view's loop's journal of places in flight (null: no loop, or past the journals). */
  private readonly journal: Int32Array | null;

  /**
   * `loop`: the gateway-wide number of the loop this view runs on (its listener's first loop number plus
   * its index), whose journal it writes; -1 for a view that takes no places (the main thread).
   */
  constructor(buffer: SharedArrayBuffer, loop = -1) {
    const head = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    this.slots = head[H_SLOTS]!;
    const journals = head[H_JOURNALS]!;
    this.i32 = new Int32Array(buffer, HEADER_BYTES, this.slots * (SLOT_BYTES / 4));
    this.header = header32(this.i32);
    this.f64 = new Float64Array(buffer, HEADER_BYTES, this.slots * (SLOT_BYTES / 8));
    this.origin = new Float64Array(buffer, 0, 1)[0]!;
    const words = JOURNAL_KEYS * JOURNAL_ENTRY;
    this.journal =
      loop >= 0 && loop < journals
        ? new Int32Array(buffer, HEADER_BYTES + this.slots * SLOT_BYTES + loop * words * 4, words)
        : null;
  }

  /**
   * Adds `delta` (+1 or -1) to the places in flight `key` holds in this loop's journal; false when it is
   * not there to take one off, or the journal is full.
   */
  private journalAdd(key: KeyHash, delta: number): boolean {
    const j = this.journal;
    if (j === null) return false;
    let i = (key.a >>> 0) % JOURNAL_KEYS;
    for (let k = 0; k < JOURNAL_KEYS; k++, i = (i + 1) % JOURNAL_KEYS) {
      const e = i * JOURNAL_ENTRY;
      const count = j[e + J_COUNT]!;
      if (count === 0) {
        // An empty entry ends the key's run: it is not in the journal.
        if (delta <= 0) return false;
        j[e + J_A] = key.a;
        j[e + J_B] = key.b;
        j[e + J_COUNT] = delta;
        return true;
      }
      if (j[e + J_A] !== key.a || j[e + J_B] !== key.b) continue;
      if (count + delta > 0) j[e + J_COUNT] = count + delta;
      else this.journalDelete(i);
      return true;
    }
    return false;
  }

  /** Empties journal entry `hole`, moving back the entries after it whose run it would otherwise cut. */
  private journalDelete(hole: number): void {
    const j = this.journal!;
    const n = JOURNAL_KEYS;
    j[hole * JOURNAL_ENTRY + J_COUNT] = 0;
    for (let i = (hole + 1) % n; ; i = (i + 1) % n) {
      const e = i * JOURNAL_ENTRY;
      if (j[e + J_COUNT] === 0) return;
      const home = (j[e + J_A]! >>> 0) % n;
      // The entry may fill the hole when the hole lies between its home and where it is now.
      if ((i - home + n) % n < (i - hole + n) % n) continue;
      const h = hole * JOURNAL_ENTRY;
      j[h + J_A] = j[e + J_A]!;
      j[h + J_B] = j[e + J_B]!;
      j[h + J_COUNT] = j[e + J_COUNT]!;
      j[e + J_COUNT] = 0;
      hole = i;
    }
  }

  /**
   * Gives back every place in flight the journal of loop `loop` holds, and empties it: that loop died
   * with those requests (call it from its successor before it takes traffic, or once it will not be
   * restarted). Returns the places given back.
   */
  static reclaimInFlight(buffer: SharedArrayBuffer, loop: number): number {
    const table = new SharedKeyTable(buffer, loop);
    const j = table.journal;
    if (j === null) return 0;
    let given = 0;
    const key: KeyHash = { a: 0, b: 0 };
    const now = table.now();
    for (let e = 0; e < j.length; e += JOURNAL_ENTRY) {
      const count = j[e + J_COUNT]!;
      if (count > 0) {
        key.a = j[e + J_A]!;
        key.b = j[e + J_B]!;
        // A slot with places in flight is never evicted: the key is where it was.
        const s = table.find(key, (key.a >>> 0) % table.slots, now);
        if (s !== -1) {
          const f = s * 8 + IN_FLIGHT;
          const before = table.f64[f]!;
          table.f64[f] = Math.max(0, before - count);
          given += before - table.f64[f]!;
          table.unlock(s);
        }
      }
    }
    j.fill(0);
    return given;
  }

  /** Keys pushed out to make room for others, by every loop. */
  get evictions(): number {
    return Atomics.load(this.header, EVICTIONS);
  }

  /** Milliseconds on the clock every loop shares. */
  now(): number {
    return performance.timeOrigin + performance.now() - this.origin;
  }

  /**
   * Locks the slot of `key` and returns its index: the slot holding it, else a free one or the least
   * recently used candidate (an eviction), claimed for it; -1 when every candidate has requests in flight.
   * Unlock with {@link unlock}. Finding takes one slot lock at a time; claiming also takes the table's
   * insert lock, so two loops never place one key twice or evict for it twice.
   */
  private lock(key: KeyHash, now: number): number {
    const start = (key.a >>> 0) % this.slots;
    const found = this.find(key, start, now);
    if (found !== -1) return found;
    const header = this.header;
    while (Atomics.compareExchange(header, INSERTING, 0, 1) !== 0);
    try {
      // Another loop may have placed it between the search and the insert lock.
      const again = this.find(key, start, now);
      if (again !== -1) return again;
      return this.claim(key, start, now);
    } finally {
      Atomics.store(header, INSERTING, 0);
    }
  }

  /** The slot holding `key`, locked, or -1 (nothing locked). */
  private find(key: KeyHash, start: number, now: number): number {
    const i32 = this.i32;
    for (let k = 0; k < PROBE; k++) {
      const s = (start + k) % this.slots;
      const base = s * 16;
      while (Atomics.compareExchange(i32, base + LOCK, 0, 1) !== 0);
      if (i32[base + IN_USE] === 1 && i32[base + KEY_A] === key.a && i32[base + KEY_B] === key.b) {
        this.f64[s * 8 + LAST_USED] = now;
        return s;
      }
      Atomics.store(i32, base + LOCK, 0);
    }
    return -1;
  }

  /**
   * Places `key` (holding the insert lock): the first free candidate, else the least recently used one
   * with nothing in flight. Returns it locked, or -1.
   */
  private claim(key: KeyHash, start: number, now: number): number {
    const i32 = this.i32;
    const f64 = this.f64;
    let victim = -1;
    let oldest = Number.POSITIVE_INFINITY;
    for (let k = 0; k < PROBE; k++) {
      const s = (start + k) % this.slots;
      const base = s * 16;
      while (Atomics.compareExchange(i32, base + LOCK, 0, 1) !== 0);
      if (i32[base + IN_USE] === 0) {
        this.place(s, key, now);
        return s;
      }
      const used = f64[s * 8 + LAST_USED]!;
      if (f64[s * 8 + IN_FLIGHT] === 0 && used < oldest) {
        oldest = used;
        victim = s;
      }
      Atomics.store(i32, base + LOCK, 0);
    }
    if (victim === -1) return -1;
    const base = victim * 16;
    while (Atomics.compareExchange(i32, base + LOCK, 0, 1) !== 0);
    // Slots are only placed under the insert lock (held): the victim still holds a key; one may have put
    // a request in flight on it meanwhile, and then it stays.
    if (f64[victim * 8 + IN_FLIGHT] !== 0) {
      Atomics.store(i32, base + LOCK, 0);
      return -1;
    }
    this.place(victim, key, now);
    Atomics.add(this.header, EVICTIONS, 1);
    return victim;
  }

  private place(s: number, key: KeyHash, now: number): void {
    const base = s * 16;
    this.i32[base + KEY_A] = key.a;
    this.i32[base + KEY_B] = key.b;
    this.i32[base + IN_USE] = 1;
    this.clear(s, now);
  }

  private clear(s: number, now: number): void {
    const f = s * 8;
    this.f64[f + LAST_USED] = now;
    this.f64[f + W0] = 0;
    this.f64[f + W1] = 0;
    this.f64[f + W2] = 0;
    this.f64[f + IN_FLIGHT] = 0;
    this.f64[f + REFILL] = 0;
  }

  private unlock(s: number): void {
    Atomics.store(this.i32, s * 16 + LOCK, 0);
  }

  private untracked(): LimitOutcome {
    const o = this.outcome;
    o.allowed = true;
    o.untracked = true;
    o.remaining = 0;
    o.resetMs = 0;
    o.retryMs = 0;
    return o;
  }

  /**
   * A token bucket (GCRA) for `key`: `rate` requests a second, `burst` at once; takes one token if it can.
   */
  tokenBucket(key: KeyHash, rate: number, burst: number): LimitOutcome {
    const now = this.now();
    const s = this.lock(key, now);
    if (s === -1) return this.untracked();
    const f = s * 8 + W0;
    const interval = 1000 / rate;
    const tolerance = burst * interval;
    // W0 holds the theoretical arrival time; 0 (new) is "full since the origin".
    const tat = Math.max(this.f64[f]!, now);
    const next = tat + interval;
    const o = this.outcome;
    o.untracked = false;
    if (next - now > tolerance) {
      o.allowed = false;
      o.remaining = 0;
      o.retryMs = next - now - tolerance;
      o.resetMs = tat - now;
    } else {
      this.f64[f] = next;
      o.allowed = true;
      o.remaining = Math.floor((tolerance - (next - now)) / interval);
      o.retryMs = 0;
      o.resetMs = next - now;
    }
    this.unlock(s);
    return o;
  }

  /**
   * A sliding window for `key`: at most `limit` requests in any `windowMs`, estimated from the current
   * and the previous fixed window (the previous one weighted by how much of it the sliding window still
   * covers); counts this request if it is allowed.
   */
  slidingWindow(key: KeyHash, limit: number, windowMs: number): LimitOutcome {
    const now = this.now();
    const s = this.lock(key, now);
    if (s === -1) return this.untracked();
    const f = s * 8;
    const f64 = this.f64;
    const index = Math.floor(now / windowMs);
    // W0: the current window's index + 1 (0: new); W1: its count; W2: the previous window's count.
    const current = f64[f + W0]! - 1;
    if (current !== index) {
      f64[f + W2] = current === index - 1 ? f64[f + W1]! : 0;
      f64[f + W1] = 0;
      f64[f + W0] = index + 1;
    }
    const into = (now - index * windowMs) / windowMs;
    const estimate = f64[f + W2]! * (1 - into) + f64[f + W1]!;
    const o = this.outcome;
    o.untracked = false;
    o.resetMs = (index + 1) * windowMs - now;
    if (estimate + 1 > limit) {
      o.allowed = false;
      o.remaining = 0;
      o.retryMs = slidingRetry(f64[f + W2]!, f64[f + W1]!, limit, into, windowMs);
    } else {
      f64[f + W1] = f64[f + W1]! + 1;
      o.allowed = true;
      o.remaining = Math.max(0, Math.floor(limit - estimate - 1));
      o.retryMs = 0;
    }
    this.unlock(s);
    return o;
  }

  /** Takes one of `max` places in flight for `key`; {@link release} gives it back (if tracked). */
  acquire(key: KeyHash, max: number): LimitOutcome {
    const now = this.now();
    const s = this.lock(key, now);
    if (s === -1) return this.untracked();
    const f = s * 8 + IN_FLIGHT;
    const inFlight = this.f64[f]!;
    const o = this.outcome;
    o.untracked = false;
    o.resetMs = 0;
    o.retryMs = 0;
    if (inFlight >= max) {
      o.allowed = false;
      o.remaining = 0;
      o.retryMs = 1000;
    } else {
      this.f64[f] = inFlight + 1;
      o.allowed = true;
      o.remaining = max - inFlight - 1;
    }
    this.unlock(s);
    o.journaled = o.allowed && this.journalAdd(key, 1);
    return o;
  }

  /**
   * Gives back a place {@link acquire} took (a slot with requests in flight is never evicted); `journaled`:
   * what the acquire's outcome said (a place not journaled is not taken off the journal).
   */
  release(key: KeyHash, journaled = true): void {
    const s = this.lock(key, this.now());
    if (s === -1) return;
    const f = s * 8 + IN_FLIGHT;
    this.f64[f] = Math.max(0, this.f64[f]! - 1);
    this.unlock(s);
    if (journaled) this.journalAdd(key, -1);
  }

  /**
   * Takes one token of the lease `key` holds from a store several processes share (a Redis limit): a
   * lease is a batch of tokens the store granted this process, valid until it expires, so most requests
   * need no round trip; a store's refusal is kept for as long as it said, so a flood is refused here too.
   * Returns {@link LEASE_TAKEN}, {@link LEASE_DENIED} (the outcome's `retryMs` says for how long) or
   * {@link LEASE_EMPTY}: ask the store. A key without a slot is always empty.
   *
   * When a take leaves fewer than `low` tokens and no loop is fetching the next lease, the outcome's
   * `untracked` is set: this caller is to fetch it now (for up to `refillMs`), before the lease runs dry
   * (then {@link leaseGrant} or {@link leaseRefillFailed} ends the claim).
   */
  leaseTake(key: KeyHash, low: number, refillMs: number): number {
    const now = this.now();
    const o = this.outcome;
    o.untracked = false;
    const s = this.lock(key, now);
    if (s === -1) return LEASE_EMPTY;
    const f = s * 8;
    const f64 = this.f64;
    // W0: tokens left; W1: when they expire; W2: until when the store refused (a refill's refusal does
    // not void the tokens still held).
    let code = LEASE_EMPTY;
    if (f64[f + W0]! >= 1 && f64[f + W1]! > now) {
      const left = f64[f + W0]! - 1;
      f64[f + W0] = left;
      code = LEASE_TAKEN;
      if (left < low && f64[f + REFILL]! <= now && f64[f + W2]! <= now) {
        f64[f + REFILL] = now + refillMs;
        o.untracked = true;
      }
    } else if (f64[f + W2]! > now) {
      o.retryMs = f64[f + W2]! - now;
      code = LEASE_DENIED;
    }
    this.unlock(s);
    return code;
  }

  /** Ends a refill claim {@link leaseTake} handed out, when the fetch failed. */
  leaseRefillFailed(key: KeyHash): void {
    const s = this.lock(key, this.now());
    if (s === -1) return;
    this.f64[s * 8 + REFILL] = 0;
    this.unlock(s);
  }

  /**
   * Adds `tokens` the store granted to the lease of `key`, all valid for `ttlMs` from now; false when the
   * key has no slot (every candidate busy with requests in flight): the caller hands them out itself.
   */
  leaseGrant(key: KeyHash, tokens: number, ttlMs: number): boolean {
    const now = this.now();
    const s = this.lock(key, now);
    if (s === -1) return false;
    const f = s * 8;
    const f64 = this.f64;
    f64[f + W0] = (f64[f + W1]! > now ? f64[f + W0]! : 0) + tokens;
    f64[f + W1] = now + ttlMs;
    f64[f + W2] = 0;
    f64[f + REFILL] = 0;
    this.unlock(s);
    return true;
  }

  /** Records the store's refusal for `key`: {@link leaseTake} answers denied for `retryMs`. */
  leaseDeny(key: KeyHash, retryMs: number): void {
    const now = this.now();
    const s = this.lock(key, now);
    if (s === -1) return;
    this.f64[s * 8 + W2] = now + retryMs;
    this.f64[s * 8 + REFILL] = 0;
    this.unlock(s);
  }

  /** The outcome of the last call on this thread (`retryMs` after {@link leaseTake} answered denied). */
  get last(): Readonly<LimitOutcome> {
    return this.outcome;
  }

  /** Requests in flight for `key` (for tests and the admin endpoint). */
  inFlight(key: KeyHash): number {
    const s = this.lock(key, this.now());
    if (s === -1) return 0;
    const n = this.f64[s * 8 + IN_FLIGHT]!;
    this.unlock(s);
    return n;
  }
}
