/**
 * The log ring: a multi-producer, single-consumer ring of records in one SharedArrayBuffer, shared by every
 * loop thread and the main thread. Lock-free and never blocking on the producer side:
 *
 * - A producer reserves space with a compare-and-swap on the write cursor (a fetch-add could not be taken
 *   back when the ring turns out to be full, and a full ring must drop, not wait), writes its record, then
 *   publishes it by storing the record's length into its first word (`Atomics.store`, a release).
 * - The consumer reads records in reservation order and stops at the first one not yet published; it zeroes
 *   what it consumed (so an unpublished slot always reads 0) before moving the read cursor on.
 * - A record never straddles the end: a producer whose record does not fit in the tail reserves the tail too
 *   and fills it with a padding record. Capacity is a power of two; cursors are 32-bit and wrap.
 * - Full ring: the record is dropped and counted per level, and the producer reports its drops in a record
 *   of their own as soon as one fits again, so loss is visible downstream.
 *
 * Record layout (8-byte aligned): [i32 length | u32 meta | f64 time | payload...], meta = payload length
 * (20 bits) | level (3) | kind (2) | producer (6) | padding flag (1).
 *
 * A reserved record not yet published holds a negative stamp in its length word (written right after the
 * reservation): its producer, that producer's epoch and its size. A loop restarted after a crash takes the
 * same producer id with the next epoch, so a record its dead predecessor reserved and never published is
 * recognised and skipped (counted as abandoned) instead of holding every later record back; at the stop
 * deadline any record still unpublished is skipped the same way.
 */

export const HEADER_BYTES = 8192;
export const RECORD_HEADER = 16;
export const MAX_PRODUCERS = 64;
/** Producer ids below this are the event loops' own (see `loopProducer`). */
export const LOOP_PRODUCERS = 32;
export const MAX_PAYLOAD = (1 << 20) - 1;

/** Levels, most severe first (index = level number). */
export const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LevelName = (typeof LEVELS)[number];
/** Record kinds. `drops` carries a producer's drop counts. */
export const KINDS = ['log', 'access', 'metric', 'drops'] as const;
export type KindName = (typeof KINDS)[number];

export const KIND_LOG = 0;
export const KIND_ACCESS = 1;
export const KIND_METRIC = 2;
export const KIND_DROPS = 3;

// Control words (Int32 indexes into the header).
const WRITE = 0;
const READ = 1;
const DOORBELL = 2;
const CAPACITY = 3;
const NEXT_PRODUCER = 4;
const STOPPING = 5;
const STOP_DEADLINE = 6;
const PRODUCER_BASE = 64;
const PRODUCER_STRIDE = 16;

/** Per-producer counter slots (Uint32, wrapping). */
export const C_OFFERED = 0;
export const C_COMMITTED = 1;
export const C_SAMPLED = 2;
export const C_DROP_FULL = 3;
export const C_DROP_LARGE = 4;
export const C_DROP_LEVEL = 5; // + level, 6 slots
/** Incarnations of this producer id (a loop restarted after a crash takes the next). */
const C_EPOCH = 14;
const C_LOOP = 15;

/** `reserve` results besides an offset. */
export const RESERVE_FULL = -1;
export const RESERVE_TOO_LARGE = -2;

// Float64 areas: sampling rates (written by whoever configures), shipper counters (shipper only).
const RATES_BYTE = 6144; // 16 doubles: levels 0..5, kinds 8..11
const SHIPPER_BYTE = 7168; // 32 doubles

/** Views over one ring buffer, usable from any thread that holds the buffer. */
export class RingMemory {
  readonly buffer: SharedArrayBuffer;
  readonly capacity: number;
  readonly mask: number;
  readonly ctl: Int32Array;
  readonly counters: Uint32Array;
  readonly rates: Float64Array;
  readonly shipper: Float64Array;
  readonly i32: Int32Array;
  readonly f64: Float64Array;
  readonly u8: Buffer;

  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.ctl = new Int32Array(buffer, 0, 64);
    this.capacity = this.ctl[CAPACITY]!;
    this.mask = this.capacity - 1;
    this.counters = new Uint32Array(buffer, PRODUCER_BASE * 4, MAX_PRODUCERS * PRODUCER_STRIDE);
    this.rates = new Float64Array(buffer, RATES_BYTE, 16);
    this.shipper = new Float64Array(buffer, SHIPPER_BYTE, 32);
    this.i32 = new Int32Array(buffer);
    this.f64 = new Float64Array(buffer);
    this.u8 = Buffer.from(buffer);
  }

  /** Allocates a ring of `capacity` bytes (a power of two, >= 4 KiB). */
  static create(capacity: number): RingMemory {
    if (
      !Number.isInteger(capacity) ||
      capacity < 4096 ||
      (capacity & (capacity - 1)) !== 0 ||
      capacity > 2 ** 30
    ) {
      throw new RangeError(
        `log ring capacity must be a power of two between 4 KiB and 1 GiB, got ${capacity}`,
      );
    }
    const buffer = new SharedArrayBuffer(HEADER_BYTES + capacity);
    const ctl = new Int32Array(buffer);
    ctl[CAPACITY] = capacity;
    ctl[NEXT_PRODUCER] = LOOP_PRODUCERS;
    const ring = new RingMemory(buffer);
    ring.rates.fill(1);
    return ring;
  }

  /**
   * The fixed producer id of event loop `loop` (ids below 32): a loop restarted after a crash writes under the
   * same id, so ids are not used up and its counters carry on. Other producers use {@link claimProducer}.
   */
  loopProducer(loop: number): number {
    if (loop < 0 || loop >= LOOP_PRODUCERS) return this.claimProducer(loop);
    Atomics.store(this.counters, loop * PRODUCER_STRIDE + C_LOOP, loop + 1);
    Atomics.add(this.counters, loop * PRODUCER_STRIDE + C_EPOCH, 1);
    return loop;
  }

  /**
   * A new producer id (32..63) for a producer on loop `loop`, or -1 for one off the loops (the main thread):
   * records carry the id, the loop is looked up.
   */
  claimProducer(loop: number): number {
    const id = Atomics.add(this.ctl, NEXT_PRODUCER, 1);
    if (id >= MAX_PRODUCERS) throw new RangeError(`a log ring takes at most ${MAX_PRODUCERS} producers`);
    Atomics.store(this.counters, id * PRODUCER_STRIDE + C_LOOP, loop < 0 ? 0 : loop + 1);
    Atomics.add(this.counters, id * PRODUCER_STRIDE + C_EPOCH, 1);
    return id;
  }

  /** The loop a producer said it writes for, or -1 for one off the loops (the main thread). */
  producerLoop(producer: number): number {
    return Atomics.load(this.counters, producer * PRODUCER_STRIDE + C_LOOP) - 1;
  }

  /** The current incarnation of a producer id (7 bits of it travel in reservation stamps). */
  producerEpoch(producer: number): number {
    return Atomics.load(this.counters, producer * PRODUCER_STRIDE + C_EPOCH) & 0x7f;
  }

  /** The stamp a producer's reservations carry (see the record layout above). */
  stampOf(producer: number): number {
    return (this.producerEpoch(producer) << 24) | (producer << 18);
  }

  counter(producer: number, slot: number): number {
    return Atomics.load(this.counters, producer * PRODUCER_STRIDE + slot);
  }

  count(producer: number, slot: number, n = 1): void {
    Atomics.add(this.counters, producer * PRODUCER_STRIDE + slot, n);
  }

  /** Bytes reserved and not yet consumed. */
  get used(): number {
    return (Atomics.load(this.ctl, WRITE) - Atomics.load(this.ctl, READ)) >>> 0;
  }

  /** Producer ids that may have counters (loop ids, then claimed ones). */
  get producers(): number {
    return Math.min(Atomics.load(this.ctl, NEXT_PRODUCER), MAX_PRODUCERS);
  }

  get stopping(): boolean {
    return Atomics.load(this.ctl, STOPPING) === 1;
  }

  set stopping(value: boolean) {
    Atomics.store(this.ctl, STOPPING, value ? 1 : 0);
    this.ring();
  }

  /** Milliseconds the shipper gets, once stopping, before giving up on sinks (shared: no message to wait for). */
  get stopDeadline(): number {
    return Atomics.load(this.ctl, STOP_DEADLINE);
  }

  set stopDeadline(ms: number) {
    Atomics.store(this.ctl, STOP_DEADLINE, Math.min(ms, 2 ** 31 - 1));
  }

  /**
   * Reserves a record with `payload` bytes for the producer whose {@link stampOf} is `stamp`. Returns the
   * byte offset (into the buffer) of the record, {@link RESERVE_FULL} when the ring has no room now, or
   * {@link RESERVE_TOO_LARGE} when the record could never fit (over half the ring). Lock-free: retries only
   * when another producer won the same compare-and-swap.
   */
  reserve(payload: number, stamp: number): number {
    const total = (RECORD_HEADER + payload + 7) & ~7;
    const capacity = this.capacity;
    if (total > capacity >>> 1) return RESERVE_TOO_LARGE;
    const ctl = this.ctl;
    for (;;) {
      const w = Atomics.load(ctl, WRITE);
      const r = Atomics.load(ctl, READ);
      const off = w & this.mask;
      const tail = capacity - off;
      const need = total <= tail ? total : tail + total;
      if (((w - r) >>> 0) + need > capacity) return RESERVE_FULL;
      if (Atomics.compareExchange(ctl, WRITE, w, (w + need) | 0) !== w) continue;
      let at = HEADER_BYTES + off;
      if (need !== total) {
        // The tail is too short: it becomes a padding record, the record starts at the ring's beginning.
        this.i32[(at >> 2) + 1] = 1 << 31;
        Atomics.store(this.i32, at >> 2, tail);
        at = HEADER_BYTES;
      }
      // The stamp says whose reservation this is, should its producer die before publishing it.
      Atomics.store(this.i32, at >> 2, -(stamp | (total >> 3)));
      return at;
    }
  }

  /** Publishes a reserved record (after its meta, time and payload are written). */
  commit(offset: number, payload: number): void {
    Atomics.store(this.i32, offset >> 2, (RECORD_HEADER + payload + 7) & ~7);
    if (Atomics.load(this.ctl, DOORBELL) === 1) this.ring();
  }

  /** Wakes the consumer if it sleeps. */
  ring(): void {
    Atomics.store(this.ctl, DOORBELL, 0);
    Atomics.notify(this.ctl, DOORBELL);
  }

  /**
   * Consumer only: visits published records in order, then frees their space. Returns how many records were
   * visited (padding excluded). `visit` gets the meta word, time, and the payload's byte range in `u8`.
   */
  drain(
    visit: (meta: number, time: number, start: number, end: number) => void,
    max = Number.POSITIVE_INFINITY,
    giveUp = false,
  ): number {
    const ctl = this.ctl;
    const i32 = this.i32;
    const start = Atomics.load(ctl, READ);
    const w = Atomics.load(ctl, WRITE);
    let r = start;
    let visited = 0;
    while (r !== w && visited < max) {
      const off = HEADER_BYTES + (r & this.mask);
      let total = Atomics.load(i32, off >> 2);
      if (total <= 0) {
        // Reserved but not yet published: later records wait behind it, unless its producer died (its id
        // has a newer epoch now) or the stop deadline passed (`giveUp`); then it is skipped and counted.
        if (total === 0) break; // the stamp is not even written yet
        const stamp = -total;
        const producer = (stamp >>> 18) & 63;
        if (!giveUp && ((stamp >>> 24) & 0x7f) === this.producerEpoch(producer)) break;
        total = (stamp & 0x3ffff) << 3;
        this.shipper[S_ABANDONED]!++;
        r = (r + total) | 0;
        continue;
      }
      const meta = i32[(off >> 2) + 1]!;
      if (meta >= 0) {
        visit(
          meta,
          this.f64[(off + 8) >> 3]!,
          off + RECORD_HEADER,
          off + RECORD_HEADER + (meta & MAX_PAYLOAD),
        );
        visited++;
      }
      r = (r + total) | 0;
    }
    if (r !== start) {
      // Zero what was consumed (an unpublished slot must read 0 on the next lap), then free it.
      const from = start & this.mask;
      const len = (r - start) >>> 0;
      if (from + len <= this.capacity) this.u8.fill(0, HEADER_BYTES + from, HEADER_BYTES + from + len);
      else {
        this.u8.fill(0, HEADER_BYTES + from, HEADER_BYTES + this.capacity);
        this.u8.fill(0, HEADER_BYTES, HEADER_BYTES + from + len - this.capacity);
      }
      Atomics.store(ctl, READ, r);
    }
    return visited;
  }

  /** Consumer only: sleeps until a producer publishes, or `timeout` ms pass. */
  async wait(timeout: number): Promise<void> {
    Atomics.store(this.ctl, DOORBELL, 1);
    // Re-check after raising the flag: a record published just before would not have rung.
    if (this.hasPublished() || this.stopping) {
      Atomics.store(this.ctl, DOORBELL, 0);
      return;
    }
    const result = Atomics.waitAsync(this.ctl, DOORBELL, 1, timeout);
    if (result.async) await result.value;
  }

  /** Whether the next record to consume is published. */
  hasPublished(): boolean {
    const r = Atomics.load(this.ctl, READ);
    if (r === Atomics.load(this.ctl, WRITE)) return false;
    return Atomics.load(this.i32, (HEADER_BYTES + (r & this.mask)) >> 2) !== 0;
  }

  /** Sampling rate (0..1) of `level`. */
  levelRate(level: number): number {
    return this.rates[level]!;
  }

  kindRate(kind: number): number {
    return this.rates[8 + kind]!;
  }
}

/** Packs a record's meta word. */
export function meta(payload: number, level: number, kind: number, producer: number): number {
  return payload | (level << 20) | (kind << 23) | (producer << 25);
}

export function metaLevel(m: number): number {
  return (m >>> 20) & 7;
}
export function metaKind(m: number): number {
  return (m >>> 23) & 3;
}
export function metaProducer(m: number): number {
  return (m >>> 25) & 63;
}

/** Shipper counter slots (Float64, written by the shipper only). */
export const S_SHIPPED = 0;
export const S_BATCHES = 1;
export const S_BYTES_RAW = 2;
export const S_BYTES_OUT = 3;
export const S_SINK_DROPPED = 4;
export const S_SINK_ERRORS = 5;
export const S_CONSUMED = 6;
export const S_FILL_HIGH = 7;
/** Records reserved and never published (their producer died, or the stop deadline came). */
export const S_ABANDONED = 8;
