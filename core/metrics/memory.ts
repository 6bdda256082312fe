/**
 * Metrics in shared memory: counters, gauges and histograms that every loop updates in place and any
 * thread reads, without a message to the loops and without an allocation per update.
 *
 * One `SharedArrayBuffer` holds a directory and a row of cells per writer (a loop). The directory names
 * the families (name, help, type, label names, histogram bounds) and the series (a family and its label
 * values); every row lays its cells out alike and a reader sums the rows cell by cell. A writer updates a
 * private copy of its row and publishes it under a sequence lock (see `writer.ts`).
 *
 * Series are held: the writer of each row that makes a series holds it (a bit in the row's holder map,
 * and a count in the entry) until it lets it go (a route a reload removed, a target that left). A row that
 * lets go moves its share of a counter or histogram into a carry row no writer owns (a gauge's share just
 * goes), so a counter never goes back. A series no row holds is retired: it leaves the exposition, and
 * comes back with its totals if it is made again; when the memory is full, the oldest retired series give
 * their entries and cells to new ones. A gateway whose routes are renamed over time therefore stays within
 * its memory. Claims, releases and scrapes take a short lock on the directory; they happen when a version
 * is built or a series is first used, never per update.
 *
 * Everything is bounded when created: `series` directory entries and `cells` cells a row. A series that
 * does not fit is counted (`dropped`) and given cells of its own that nobody reads: updates never throw.
 */
import { KEY_SEPARATOR, type MetricFamily } from './family.ts';

// ---- layout -----------------------------------------------------------------------------------------

const MAGIC = 0x6e6c6d32; // "nlm2"
// Header words (Int32).
const H_MAGIC = 0;
const H_FAMILIES = 1;
const H_SERIES = 2;
const H_CELLS = 3;
const H_ROWS = 4;
const H_NEXT_CELL = 5;
const H_DROPPED = 6;
/** The directory lock: 0, or the owner holding it (a row + 1, or rows + 1 for readers). */
const H_LOCK = 7;
/** Series retired so far: each retired entry keeps its number, so the oldest is reclaimed first. */
const H_RETIRED = 8;
/** Ranges in the free list: cells no series owns (left over when an entry of another width was reused). */
const H_FREE_RANGES = 9;
/** Bumped by each taker of the lock, so a waiter tells a lock held for long from one changing hands. */
const H_LOCK_TAKEN = 10;
const HEADER_BYTES = 64;
const FAMILY_BYTES = 2048;
const SERIES_BYTES = 512;
// A series entry's words, then its key.
const S_STATE = 0;
const S_HASH = 1;
const S_FAMILY = 2;
const S_CELL = 3;
const S_KEY_LENGTH = 4;
const S_HOLDERS = 5;
const S_WIDTH = 6;
/** 1 for a gauge: a share let go is dropped, not carried. */
const S_GAUGE = 7;
/** When it was retired (H_RETIRED then). */
const S_RETIRED_AT = 8;
const SERIES_FIXED = 36;
const FAMILY_FIXED = 8;
// Entry states. Families go EMPTY -> CLAIMING -> READY by compare-and-swap; series, under the lock, go
// EMPTY -> READY -> FREE -> READY... (a retired entry keeps its key and carry: made again, it comes back;
// probes pass it, and a new series takes the oldest one's room when nothing else is left).
const EMPTY = 0;
const CLAIMING = 1;
const READY = 2;
const FREE = 3;
/** A lock held this long belongs to a thread that died holding it (claims take microseconds). */
const LOCK_STALE_MS = 2000;

/** Sizes of a metrics memory (see {@link createMetricsMemory}). */
export interface MetricsMemoryOptions {
  /** Writers (loops), one row each. */
  rows: number;
  /** Families the directory holds (default 128). */
  families?: number;
  /** Series the directory holds at once (default 4,096; freed series make room). */
  series?: number;
  /** Cells a row holds (default 32,768; a histogram series takes its bucket count + 3). */
  cells?: number;
}

/** Allocates a metrics memory: pass it to every thread that writes or reads. */
export function createMetricsMemory(options: MetricsMemoryOptions): SharedArrayBuffer {
  const families = options.families ?? 128;
  const series = options.series ?? 4096;
  const cells = options.cells ?? 32_768;
  const rows = options.rows;
  for (const [k, v] of Object.entries({ rows, families, series, cells }))
    if (!Number.isSafeInteger(v) || v < 1)
      throw new RangeError(`metrics memory: ${k} must be a whole number >= 1`);
  const bytes =
    HEADER_BYTES +
    families * FAMILY_BYTES +
    series * SERIES_BYTES +
    align8(rows * 4) +
    align8(rows * holderWords(series) * 4) +
    align8(series * 2 * 4) +
    (rows + 1) * cells * 8;
  const buffer = new SharedArrayBuffer(bytes);
  const head = new Int32Array(buffer, 0, HEADER_BYTES / 4);
  head[H_FAMILIES] = families;
  head[H_SERIES] = series;
  head[H_CELLS] = cells;
  head[H_ROWS] = rows;
  Atomics.store(head, H_MAGIC, MAGIC);
  return buffer;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Words of one row's holder map: a bit a series entry. */
function holderWords(series: number): number {
  return Math.ceil(series / 32);
}

/** FNV-1a over a string's UTF-16 units (a probe start, not an identity: keys are compared whole). */
function hashKey(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A series as the directory lists it. */
export interface DirectorySeries {
  /** Its label values, one per label name of the family. */
  readonly values: string[];
  /** Its first cell in every row. */
  readonly cell: number;
}

/** @internal A series entry a row holds (see {@link MetricsMemory.held}). */
export interface HeldSeries {
  readonly entry: number;
  readonly key: string;
  readonly cell: number;
  readonly width: number;
}

/** One thread's view of a metrics memory: the directory, and reading the rows. */
export class MetricsMemory {
  readonly buffer: SharedArrayBuffer;
  readonly rows: number;
  readonly cellsPerRow: number;
  private readonly head: Int32Array;
  private readonly words: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly familyCount: number;
  private readonly seriesCount: number;
  private readonly familiesAt: number;
  private readonly seriesAt: number;
  private readonly seqs: Int32Array;
  private readonly holders: Int32Array;
  private readonly holderRow: number;
  /** Free cell ranges: (first cell, width) pairs, `H_FREE_RANGES` of them. */
  private readonly freeRanges: Int32Array;
  /** Every row's cells, one after the other, then the carry row (shares of series let go). */
  readonly cells: Float64Array;
  /** Families this view resolved, by definition (their directory index). */
  private readonly known = new Map<MetricFamily, number>();

  constructor(buffer: SharedArrayBuffer) {
    const head = new Int32Array(buffer, 0, HEADER_BYTES / 4);
    if (Atomics.load(head, H_MAGIC) !== MAGIC)
      throw new TypeError('not a metrics memory (createMetricsMemory)');
    this.buffer = buffer;
    this.head = head;
    this.words = new Int32Array(buffer);
    this.bytes = new Uint8Array(buffer);
    this.familyCount = head[H_FAMILIES]!;
    this.seriesCount = head[H_SERIES]!;
    this.cellsPerRow = head[H_CELLS]!;
    this.rows = head[H_ROWS]!;
    this.familiesAt = HEADER_BYTES;
    this.seriesAt = this.familiesAt + this.familyCount * FAMILY_BYTES;
    const seqAt = this.seriesAt + this.seriesCount * SERIES_BYTES;
    this.seqs = new Int32Array(buffer, seqAt, this.rows);
    const holdersAt = seqAt + align8(this.rows * 4);
    this.holderRow = holderWords(this.seriesCount);
    this.holders = new Int32Array(buffer, holdersAt, this.rows * this.holderRow);
    const freeAt = holdersAt + align8(this.rows * this.holderRow * 4);
    this.freeRanges = new Int32Array(buffer, freeAt, this.seriesCount * 2);
    this.cells = new Float64Array(
      buffer,
      freeAt + align8(this.seriesCount * 2 * 4),
      (this.rows + 1) * this.cellsPerRow,
    );
  }

  /** Series that found no room (directory or cells full) since the memory was made. */
  get dropped(): number {
    return Atomics.load(this.head, H_DROPPED);
  }

  /** Cells claimed so far (the same in every row; freed cells are reused before new ones are claimed). */
  get usedCells(): number {
    return Atomics.load(this.head, H_NEXT_CELL);
  }

  /** Series entries in use now (held by at least one row; retired ones are not). */
  get liveSeries(): number {
    return this.locked(this.rows + 1, () => {
      let n = 0;
      for (let i = 0; i < this.seriesCount; i++) if (this.words[this.entryAt(i) + S_STATE] === READY) n++;
      return n;
    });
  }

  /** The directory index of `family`, claimed if new; -1 when the table is full. */
  family(family: MetricFamily): number {
    const cached = this.known.get(family);
    if (cached !== undefined) return cached;
    const text = JSON.stringify(family);
    const encoded = encoder.encode(text);
    if (encoded.length > FAMILY_BYTES - FAMILY_FIXED)
      throw new TypeError(`metric ${family.name}: its definition is too long for the directory`);
    const words = this.words;
    let i = hashKey(family.name) % this.familyCount;
    for (let probe = 0; probe < this.familyCount; probe++, i = (i + 1) % this.familyCount) {
      const at = this.familiesAt + i * FAMILY_BYTES;
      const state = Atomics.compareExchange(words, at / 4, EMPTY, CLAIMING);
      if (state === EMPTY) {
        this.bytes.set(encoded, at + FAMILY_FIXED);
        Atomics.store(words, at / 4 + 1, encoded.length);
        Atomics.store(words, at / 4, READY);
        this.known.set(family, i);
        return i;
      }
      const other = this.familyAt(i);
      if (other.name !== family.name) continue;
      if (JSON.stringify(other) !== text)
        throw new TypeError(
          `metric ${family.name} is already defined differently (${JSON.stringify(other)})`,
        );
      this.known.set(family, i);
      return i;
    }
    Atomics.add(this.head, H_DROPPED, 1);
    return -1;
  }

  /** The definition at directory index `i` (waits for one being claimed). */
  private familyAt(i: number): MetricFamily {
    const at = this.familiesAt + i * FAMILY_BYTES;
    while (Atomics.load(this.words, at / 4) === CLAIMING);
    const length = Atomics.load(this.words, at / 4 + 1);
    return JSON.parse(
      decoder.decode(this.bytes.slice(at + FAMILY_FIXED, at + FAMILY_FIXED + length)),
    ) as MetricFamily;
  }

  /** The first word of series entry `i`. */
  private entryAt(i: number): number {
    return (this.seriesAt + i * SERIES_BYTES) / 4;
  }

  private keyOf(at: number): string {
    const from = at * 4 + SERIES_FIXED;
    return decoder.decode(this.bytes.slice(from, from + this.words[at + S_KEY_LENGTH]!));
  }

  /** Runs `body` holding the directory lock as `owner` (a row + 1, or rows + 1 for a reader). */
  private locked<T>(owner: number, body: () => T): T {
    const head = this.head;
    let since = 0;
    let seen = -1;
    for (;;) {
      const held = Atomics.compareExchange(head, H_LOCK, 0, owner);
      if (held === 0) break;
      const now = Date.now();
      const taken = Atomics.load(head, H_LOCK_TAKEN);
      if (taken !== seen) {
        // Taken again since we last looked: a live lock changing hands, not one left held.
        seen = taken;
        since = now;
      } else if (now - since > LOCK_STALE_MS) {
        // The same taking for this long: its holder died inside (a thread ended mid-claim). Take it over.
        if (Atomics.compareExchange(head, H_LOCK, held, owner) === held) break;
        continue;
      }
      Atomics.wait(head, H_LOCK, held, 1);
    }
    Atomics.add(head, H_LOCK_TAKEN, 1);
    try {
      return body();
    } finally {
      Atomics.compareExchange(head, H_LOCK, owner, 0);
      Atomics.notify(head, H_LOCK);
    }
  }

  /** Whether row `row` holds entry `i`. */
  private heldBy(row: number, i: number): boolean {
    return (this.holders[row * this.holderRow + (i >>> 5)]! & (1 << (i & 31))) !== 0;
  }

  /** Row `row` holds entry `i` (under the lock). */
  private hold(row: number, i: number): void {
    if (this.heldBy(row, i)) return;
    this.holders[row * this.holderRow + (i >>> 5)]! |= 1 << (i & 31);
    this.words[this.entryAt(i) + S_HOLDERS]! += 1;
  }

  /** Row `row` lets entry `i` go; the last holder retires it (under the lock). */
  private unhold(row: number, i: number): void {
    if (!this.heldBy(row, i)) return;
    this.holders[row * this.holderRow + (i >>> 5)]! &= ~(1 << (i & 31));
    const at = this.entryAt(i);
    const words = this.words;
    words[at + S_HOLDERS]! -= 1;
    if (words[at + S_HOLDERS]! > 0) return;
    words[at + S_STATE] = FREE;
    words[at + S_RETIRED_AT] = ++this.head[H_RETIRED]!;
  }

  /**
   * @internal The series of `family` (directory index `f`) with label values `key` (joined), held by `row`
   * from now on: found, brought back with its totals if retired, or claimed with `width` cells. Its entry,
   * or -1 when the directory has no room.
   */
  claim(f: number, key: string, width: number, gauge: boolean, row: number): number {
    const encoded = encoder.encode(key);
    if (encoded.length > SERIES_BYTES - SERIES_FIXED) {
      Atomics.add(this.head, H_DROPPED, 1);
      return -1;
    }
    const h = (hashKey(key) ^ Math.imul(f + 1, 0x9e3779b1)) | 0;
    return this.locked(row + 1, () => {
      const words = this.words;
      const n = this.seriesCount;
      let empty = -1; // the empty entry ending the probe path
      let oldest = -1; // else the longest retired entry on it
      let i = (h >>> 0) % n;
      for (let probe = 0; probe < n; probe++, i = (i + 1) % n) {
        const at = this.entryAt(i);
        const state = words[at + S_STATE];
        if (state === EMPTY) {
          empty = i;
          break; // a key is never past an empty entry
        }
        if (this.isKey(at, h, f, encoded)) {
          if (state === FREE) {
            // Made again: it comes back with what it had counted (new cells if its own were taken).
            if (words[at + S_CELL]! < 0) words[at + S_CELL] = this.newCells(width);
            if (words[at + S_CELL]! < 0) Atomics.add(this.head, H_DROPPED, 1);
            words[at + S_STATE] = READY;
          }
          this.hold(row, i);
          return i;
        }
        if (
          state === FREE &&
          (oldest < 0 || words[at + S_RETIRED_AT]! < words[this.entryAt(oldest) + S_RETIRED_AT]!)
        )
          oldest = i;
      }
      const slot = empty >= 0 ? empty : oldest;
      if (slot < 0) {
        Atomics.add(this.head, H_DROPPED, 1);
        return -1;
      }
      const at = this.entryAt(slot);
      let cell = -1;
      if (words[at + S_STATE] === FREE && words[at + S_CELL]! >= 0) {
        // The retired series whose entry this takes is gone for good; its cells are ours if they fit,
        // else they go to the free list for another series.
        const theirs = words[at + S_WIDTH]!;
        const taken = this.reclaim(slot);
        if (theirs === width) cell = taken;
        else this.freeCells(taken, theirs);
      }
      if (cell < 0) cell = this.newCells(width);
      words[at + S_HASH] = h;
      words[at + S_FAMILY] = f;
      words[at + S_CELL] = cell;
      words[at + S_WIDTH] = width;
      words[at + S_GAUGE] = gauge ? 1 : 0;
      this.bytes.set(encoded, at * 4 + SERIES_FIXED);
      words[at + S_KEY_LENGTH] = encoded.length;
      words[at + S_HOLDERS] = 0;
      words[at + S_STATE] = READY;
      this.hold(row, slot);
      if (cell < 0) Atomics.add(this.head, H_DROPPED, 1);
      return slot;
    });
  }

  /** Whether entry `at` is the series with this hash, family and key. */
  private isKey(at: number, h: number, f: number, encoded: Uint8Array): boolean {
    const words = this.words;
    if (words[at + S_HASH] !== h || words[at + S_FAMILY] !== f || words[at + S_KEY_LENGTH] !== encoded.length)
      return false;
    const base = at * 4 + SERIES_FIXED;
    for (let k = 0; k < encoded.length; k++) if (this.bytes[base + k] !== encoded[k]) return false;
    return true;
  }

  /**
   * Cells for a series: new ones while the rows have room, else free ones, else the oldest retired
   * series' that are wide enough (that series then comes back from zero, if ever; what is left over goes
   * to the free list); -1 when none.
   */
  private newCells(width: number): number {
    const head = this.head;
    const next = head[H_NEXT_CELL]!;
    if (next + width <= this.cellsPerRow) {
      Atomics.store(head, H_NEXT_CELL, next + width);
      return next;
    }
    const free = this.takeFree(width);
    if (free >= 0) return free;
    const words = this.words;
    let oldest = -1;
    for (let i = 0; i < this.seriesCount; i++) {
      const at = this.entryAt(i);
      if (words[at + S_STATE] !== FREE || words[at + S_CELL]! < 0 || words[at + S_WIDTH]! < width) continue;
      if (oldest < 0 || words[at + S_RETIRED_AT]! < words[this.entryAt(oldest) + S_RETIRED_AT]!) oldest = i;
    }
    if (oldest < 0) return -1;
    const theirs = words[this.entryAt(oldest) + S_WIDTH]!;
    const cell = this.reclaim(oldest);
    if (theirs > width) this.freeCells(cell + width, theirs - width);
    return cell;
  }

  /** Puts `width` cells from `cell` on the free list (zero in every row and the carry already). */
  private freeCells(cell: number, width: number): void {
    const n = this.head[H_FREE_RANGES]!;
    if (n >= this.seriesCount) return; // a list this long means fragments too small to matter
    this.freeRanges[2 * n] = cell;
    this.freeRanges[2 * n + 1] = width;
    this.head[H_FREE_RANGES] = n + 1;
  }

  /** Takes `width` cells off the free list (the first range wide enough), or -1. */
  private takeFree(width: number): number {
    const ranges = this.freeRanges;
    const n = this.head[H_FREE_RANGES]!;
    for (let j = 0; j < n; j++) {
      const have = ranges[2 * j + 1]!;
      if (have < width) continue;
      const cell = ranges[2 * j]!;
      if (have > width) {
        ranges[2 * j] = cell + width;
        ranges[2 * j + 1] = have - width;
      } else {
        ranges[2 * j] = ranges[2 * (n - 1)]!;
        ranges[2 * j + 1] = ranges[2 * (n - 1) + 1]!;
        this.head[H_FREE_RANGES] = n - 1;
      }
      return cell;
    }
    return -1;
  }

  /**
   * Takes retired entry `i`'s cells away from it: their carry is cleared (every row's share is zero
   * already: each holder zeroed its own when it let go). Returns them.
   */
  private reclaim(i: number): number {
    const at = this.entryAt(i);
    const cell = this.words[at + S_CELL]!;
    this.words[at + S_CELL] = -1;
    const carry = this.rows * this.cellsPerRow;
    this.cells.fill(0, carry + cell, carry + cell + this.words[at + S_WIDTH]!);
    return cell;
  }

  /** @internal The first cell of entry `i` (-1: it found no room). */
  cellOf(i: number): number {
    return Atomics.load(this.words, this.entryAt(i) + S_CELL);
  }

  /**
   * @internal Row `row` lets entry `i` go: its share (`share`, the writer's own copy of the cells; else
   * what its shared row holds) moves into the carry row unless the series is a gauge, and its shared cells
   * are zeroed (its writer zeroes its own copy). The last holder retires the series.
   */
  release(i: number, row: number, share: Float64Array | null = null): void {
    this.locked(row + 1, () => {
      if (!this.heldBy(row, i)) return;
      this.letGo(row, i, share);
    });
  }

  /** Moves row `row`'s share of entry `i` to the carry row and lets the entry go (under the lock). */
  private letGo(row: number, i: number, share: Float64Array | null): void {
    const at = this.entryAt(i);
    const cell = this.words[at + S_CELL]!;
    if (cell >= 0) {
      const width = this.words[at + S_WIDTH]!;
      const base = row * this.cellsPerRow + cell;
      const carry = this.rows * this.cellsPerRow + cell;
      this.bumpSeq(row);
      if (this.words[at + S_GAUGE] === 0)
        for (let k = 0; k < width; k++)
          this.cells[carry + k]! += share === null ? this.cells[base + k]! : share[k]!;
      this.cells.fill(0, base, base + width);
      this.bumpSeq(row);
    }
    this.unhold(row, i);
  }

  /** @internal The entries of family `f` that row `row` holds. */
  held(f: number, row: number): HeldSeries[] {
    return this.locked(row + 1, () => {
      const out: HeldSeries[] = [];
      for (let i = 0; i < this.seriesCount; i++) {
        const at = this.entryAt(i);
        if (this.words[at + S_STATE] !== READY || this.words[at + S_FAMILY] !== f || !this.heldBy(row, i))
          continue;
        out.push({
          entry: i,
          key: this.keyOf(at),
          cell: this.words[at + S_CELL]!,
          width: this.words[at + S_WIDTH]!,
        });
      }
      return out;
    });
  }

  /** The directory now: every family and its series held by some row (under the lock). */
  private listing(): { family: MetricFamily; series: DirectorySeries[] }[] {
    const byIndex = new Map<number, { family: MetricFamily; series: DirectorySeries[] }>();
    for (let i = 0; i < this.familyCount; i++) {
      const at = this.familiesAt + i * FAMILY_BYTES;
      if (Atomics.load(this.words, at / 4) === EMPTY) continue;
      byIndex.set(i, { family: this.familyAt(i), series: [] });
    }
    const words = this.words;
    for (let i = 0; i < this.seriesCount; i++) {
      const at = this.entryAt(i);
      if (words[at + S_STATE] !== READY) continue;
      const cell = words[at + S_CELL]!;
      const entry = byIndex.get(words[at + S_FAMILY]!);
      if (cell < 0 || entry === undefined) continue;
      const key = this.keyOf(at);
      entry.series.push({ values: entry.family.labels.length === 0 ? [] : key.split(KEY_SEPARATOR), cell });
    }
    return [...byIndex.values()];
  }

  /** Every family and its series (label values and first cell), as the directory holds them now. */
  directory(): { family: MetricFamily; series: DirectorySeries[] }[] {
    return this.locked(this.rows + 1, () => this.listing());
  }

  /**
   * The directory and every row's cells summed, taken together: a series freed and its cells reused in
   * between cannot lend one series' counts to another's name.
   */
  snapshot(): { directory: { family: MetricFamily; series: DirectorySeries[] }[]; cells: Float64Array } {
    return this.locked(this.rows + 1, () => ({ directory: this.listing(), cells: this.total() }));
  }

  /** Every row's cells summed, with the carry (each row read whole between two publishes). */
  sum(): Float64Array {
    return this.locked(this.rows + 1, () => this.total());
  }

  private total(): Float64Array {
    const used = this.usedCells;
    const total = new Float64Array(used);
    const width = this.cellsPerRow;
    for (let r = 0; r < this.rows; r++) {
      let row: Float64Array;
      // A publish copies a row in microseconds; a sequence odd for this long belongs to a writer that died
      // mid-publish (its thread ended): the row is read as it is rather than waited for forever.
      for (let tries = 0; ; tries++) {
        const before = Atomics.load(this.seqs, r);
        if ((before & 1) === 1 && tries < 100_000) continue; // a publish is copying this row
        row = this.cells.slice(r * width, r * width + used);
        if (Atomics.load(this.seqs, r) === before || tries >= 100_000) break;
      }
      for (let c = 0; c < used; c++) total[c]! += row[c]!;
    }
    const carry = this.rows * width;
    for (let c = 0; c < used; c++) total[c]! += this.cells[carry + c]!;
    return total;
  }

  /**
   * @internal Row `r`'s writer is gone (its loop crashed): its gauges no longer hold (zeroed; counters
   * stay, and a restarted writer continues them and the series the row held), a publish it left half done
   * is closed, and the directory lock, if it died holding it, is let go.
   */
  settleRow(r: number): void {
    if ((Atomics.load(this.seqs, r) & 1) === 1) Atomics.add(this.seqs, r, 1);
    Atomics.compareExchange(this.head, H_LOCK, r + 1, 0);
    this.locked(this.rows + 1, () => {
      this.bumpSeq(r);
      const base = r * this.cellsPerRow;
      for (const { family, series } of this.listing())
        if (family.type === 'gauge') for (const s of series) this.cells[base + s.cell] = 0;
      this.bumpSeq(r);
    });
  }

  /**
   * @internal Row `r` will have no writer again (its loop is not restarted): it lets go of what it held,
   * its counters' shares carried (they do not go back), its gauges' dropped.
   */
  releaseRow(r: number): void {
    this.locked(this.rows + 1, () => {
      for (let i = 0; i < this.seriesCount; i++) if (this.heldBy(r, i)) this.letGo(r, i, null);
    });
  }

  /** @internal Marks row `r` as being written (odd) or written (even). */
  bumpSeq(r: number): void {
    Atomics.add(this.seqs, r, 1);
  }
}
