/**
 * Metrics in shared memory: counters, gauges and histograms that every loop updates in place and any
 * thread reads, without a message to the loops and without an allocation per update.
 *
 * One `SharedArrayBuffer` holds a directory and a row of cells per writer (a loop). The directory names
 * the families (name, help, type, label names, histogram bounds) and the series (a family and its label
 * values), each claimed once by whichever thread first asks (a compare-and-swap; later askers find it), so
 * every row lays its cells out alike and a reader sums the rows cell by cell.
 *
 * A writer updates a private copy of its row with plain additions (the hot path pays an addition and an
 * array store) and publishes it into its shared row every few milliseconds under a sequence lock: the
 * sequence is odd while the row is being copied, and a reader that saw it change reads the row again. A
 * scrape is therefore at most one publish interval behind the loops.
 *
 * Everything is bounded when created: `series` directory entries and `cells` cells a row. A series that
 * does not fit is counted (`dropped`) and given cells of its own that nobody reads: updates never throw.
 */

/** What a family counts: a monotonic `counter`, a `gauge` that goes both ways, or a `histogram`. */
export type MetricType = 'counter' | 'gauge' | 'histogram';

/** A metric family: series of one name with the same label names. Define once, at module level. */
export interface MetricFamily {
  /** The metric's name (`[a-zA-Z_:][a-zA-Z0-9_:]*`); counters end in `_total`, histograms name a unit. */
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  /** The label names each series gives values for, in this order. */
  readonly labels: readonly string[];
  /** Histograms: the bucket upper bounds, ascending (`+Inf` is implied). */
  readonly buckets: readonly number[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Defines a metric family (checked: a bad name, label or bound throws a `TypeError` here, not at a scrape).
 * `buckets` only for histograms.
 */
export function defineMetric(
  name: string,
  type: MetricType,
  help: string,
  labels: readonly string[] = [],
  buckets: readonly number[] = [],
): MetricFamily {
  if (!NAME.test(name))
    throw new TypeError(`metric name ${JSON.stringify(name)} is not [a-zA-Z_:][a-zA-Z0-9_:]*`);
  for (const l of labels)
    if (!LABEL.test(l) || l.startsWith('__') || (type === 'histogram' && l === 'le'))
      throw new TypeError(`label name ${JSON.stringify(l)} of ${name} is not allowed`);
  if (new Set(labels).size !== labels.length) throw new TypeError(`${name} repeats a label name`);
  if (type === 'histogram') {
    if (buckets.length === 0) throw new TypeError(`histogram ${name} needs bucket bounds`);
    for (let i = 0; i < buckets.length; i++)
      if (!Number.isFinite(buckets[i]!) || (i > 0 && buckets[i]! <= buckets[i - 1]!))
        throw new TypeError(`histogram ${name}: bounds are finite and ascending`);
  } else if (buckets.length > 0) throw new TypeError(`${name}: only histograms have buckets`);
  return Object.freeze({ name, help, type, labels: [...labels], buckets: [...buckets] });
}

/** Cells a series of `family` takes: one, or a histogram's buckets, `+Inf`, sum and count. */
function widthOf(family: MetricFamily): number {
  return family.type === 'histogram' ? family.buckets.length + 3 : 1;
}

// ---- layout -----------------------------------------------------------------------------------------

const MAGIC = 0x6e6c6d31; // "nlm1"
// Header words (Int32).
const H_MAGIC = 0;
const H_FAMILIES = 1;
const H_SERIES = 2;
const H_CELLS = 3;
const H_ROWS = 4;
const H_NEXT_CELL = 5;
const H_DROPPED = 6;
const HEADER_BYTES = 64;
const FAMILY_BYTES = 2048;
const SERIES_BYTES = 512;
/** Bytes of a series entry before its key: state, hash, family, cell, key length. */
const SERIES_FIXED = 20;
const FAMILY_FIXED = 8;
const EMPTY = 0;
const CLAIMING = 1;
const READY = 2;

/** Sizes of a metrics memory (see {@link createMetricsMemory}). */
export interface MetricsMemoryOptions {
  /** Writers (loops), one row each. */
  rows: number;
  /** Families the directory holds (default 128). */
  families?: number;
  /** Series the directory holds (default 4,096). */
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
  const seqBytes = align8(rows * 4);
  const bytes = HEADER_BYTES + families * FAMILY_BYTES + series * SERIES_BYTES + seqBytes + rows * cells * 8;
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
  /** Every row's cells, one after the other. */
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
    this.cells = new Float64Array(buffer, seqAt + align8(this.rows * 4), this.rows * this.cellsPerRow);
  }

  /** Series that found no room (directory or cells full) since the memory was made. */
  get dropped(): number {
    return Atomics.load(this.head, H_DROPPED);
  }

  /** Cells claimed so far (the same in every row). */
  get usedCells(): number {
    return Math.min(Atomics.load(this.head, H_NEXT_CELL), this.cellsPerRow);
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

  /**
   * The first cell of the series of `family` (directory index `f`) with label values `key` (joined), claimed
   * with `width` cells if new; -1 when there is no room.
   */
  series(f: number, key: string, width: number): number {
    const encoded = encoder.encode(key);
    if (encoded.length > SERIES_BYTES - SERIES_FIXED) {
      Atomics.add(this.head, H_DROPPED, 1);
      return -1;
    }
    const words = this.words;
    const h = hashKey(key) ^ Math.imul(f + 1, 0x9e3779b1);
    let i = (h >>> 0) % this.seriesCount;
    for (let probe = 0; probe < this.seriesCount; probe++, i = (i + 1) % this.seriesCount) {
      const at = (this.seriesAt + i * SERIES_BYTES) / 4;
      const state = Atomics.compareExchange(words, at, EMPTY, CLAIMING);
      if (state === EMPTY) {
        const cell = Atomics.add(this.head, H_NEXT_CELL, width);
        const fits = cell + width <= this.cellsPerRow;
        words[at + 1] = h | 0;
        words[at + 2] = f;
        words[at + 3] = fits ? cell : -1;
        this.bytes.set(encoded, at * 4 + SERIES_FIXED);
        words[at + 4] = encoded.length;
        Atomics.store(words, at, READY);
        if (!fits) Atomics.add(this.head, H_DROPPED, 1);
        return fits ? cell : -1;
      }
      while (Atomics.load(words, at) === CLAIMING);
      if (words[at + 1] !== (h | 0) || words[at + 2] !== f) continue;
      const length = words[at + 4]!;
      if (length !== encoded.length) continue;
      const base = at * 4 + SERIES_FIXED;
      let same = true;
      for (let k = 0; k < length; k++)
        if (this.bytes[base + k] !== encoded[k]) {
          same = false;
          break;
        }
      if (same) return words[at + 3]!;
    }
    Atomics.add(this.head, H_DROPPED, 1);
    return -1;
  }

  /** Every family and its series (label values and first cell), as the directory holds them now. */
  directory(): { family: MetricFamily; series: { values: string[]; cell: number }[] }[] {
    const byIndex = new Map<number, { family: MetricFamily; series: { values: string[]; cell: number }[] }>();
    for (let i = 0; i < this.familyCount; i++) {
      const at = this.familiesAt + i * FAMILY_BYTES;
      if (Atomics.load(this.words, at / 4) === EMPTY) continue;
      byIndex.set(i, { family: this.familyAt(i), series: [] });
    }
    const words = this.words;
    for (let i = 0; i < this.seriesCount; i++) {
      const at = (this.seriesAt + i * SERIES_BYTES) / 4;
      if (Atomics.load(words, at) !== READY) continue;
      const cell = words[at + 3]!;
      const entry = byIndex.get(words[at + 2]!);
      if (cell < 0 || entry === undefined) continue;
      const key = decoder.decode(
        this.bytes.slice(at * 4 + SERIES_FIXED, at * 4 + SERIES_FIXED + words[at + 4]!),
      );
      entry.series.push({ values: entry.family.labels.length === 0 ? [] : key.split(KEY_SEPARATOR), cell });
    }
    return [...byIndex.values()];
  }

  /** Every row's cells summed (each row read whole between two publishes: a consistent row). */
  sum(): Float64Array {
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
    return total;
  }

  /**
   * @internal Row `r`'s writer is gone (its loop crashed): its gauges no longer hold (zeroed; counters
   * stay, and a restarted writer continues them), and a publish it left half done is closed.
   */
  settleRow(r: number): void {
    if ((Atomics.load(this.seqs, r) & 1) === 1) Atomics.add(this.seqs, r, 1);
    this.bumpSeq(r);
    const base = r * this.cellsPerRow;
    for (const { family, series } of this.directory())
      if (family.type === 'gauge') for (const s of series) this.cells[base + s.cell] = 0;
    this.bumpSeq(r);
  }

  /** @internal Marks row `r` as being written (odd) or written (even). */
  bumpSeq(r: number): void {
    Atomics.add(this.seqs, r, 1);
  }
}

/** Joins label values into a series key (a value may hold anything but this character). */
export const KEY_SEPARATOR = '\u0000';

/** A series' update handle: a counter or gauge cell, or a histogram's cells, in its writer's row. */
export class MetricSeries {
  private readonly local: Float64Array;
  private readonly at: number;
  private readonly bounds: readonly number[];
  private readonly writer: MetricsWriter;

  /** @internal Use `MetricsWriter.series`. */
  constructor(writer: MetricsWriter, local: Float64Array, at: number, bounds: readonly number[]) {
    this.writer = writer;
    this.local = local;
    this.at = at;
    this.bounds = bounds;
  }

  /** Adds `n` (1 by default) to a counter or gauge. */
  add(n = 1): void {
    this.local[this.at]! += n;
    this.writer.dirty = true;
  }

  /** Sets a gauge (this writer's share of it: rows are summed). */
  set(v: number): void {
    this.local[this.at] = v;
    this.writer.dirty = true;
  }

  /** Records one observation in a histogram. */
  observe(v: number): void {
    const bounds = this.bounds;
    const local = this.local;
    const at = this.at;
    let b = 0;
    while (b < bounds.length && v > bounds[b]!) b++;
    local[at + b]! += 1; // non-cumulative here; the exposition sums them up
    local[at + bounds.length + 1]! += v;
    local[at + bounds.length + 2]! += 1;
    this.writer.dirty = true;
  }
}

/**
 * A thread's writer over one row: series handles (made once, then updated with no allocation) and
 * `publish`, which the owner calls every few milliseconds. Only one writer may own a row at a time; a
 * writer made for a row that had one before (a restarted loop) continues its totals.
 */
export class MetricsWriter {
  readonly memory: MetricsMemory;
  readonly row: number;
  private readonly local: Float64Array;
  /** Cells of series that found no room: written, never published. */
  private readonly spare: Float64Array;
  /** @internal Something changed since the last publish. */
  dirty = false;
  private readonly handles = new Map<MetricFamily, Map<string, MetricSeries>>();

  constructor(memory: SharedArrayBuffer | MetricsMemory, row: number) {
    const m = memory instanceof MetricsMemory ? memory : new MetricsMemory(memory);
    if (!Number.isInteger(row) || row < 0 || row >= m.rows)
      throw new RangeError(`metrics row ${row} is not one of the memory's ${m.rows}`);
    this.memory = m;
    this.row = row;
    const width = m.cellsPerRow;
    this.local = m.cells.slice(row * width, (row + 1) * width);
    this.spare = new Float64Array(64);
  }

  /**
   * The series of `family` with these label values (one per label name, in order), made once: keep the
   * handle. A series the memory has no room for still takes updates (they are counted nowhere).
   */
  series(family: MetricFamily, values: readonly string[] = []): MetricSeries {
    if (values.length !== family.labels.length)
      throw new TypeError(`${family.name} takes ${family.labels.length} label values, got ${values.length}`);
    for (const v of values)
      if (v.includes(KEY_SEPARATOR))
        throw new TypeError(`a label value of ${family.name} holds a NUL character`);
    const key = values.join(KEY_SEPARATOR);
    let byKey = this.handles.get(family);
    if (byKey === undefined) {
      byKey = new Map();
      this.handles.set(family, byKey);
    }
    const known = byKey.get(key);
    if (known !== undefined) return known;
    const m = this.memory;
    const f = m.family(family);
    const width = widthOf(family);
    const cell = f < 0 ? -1 : m.series(f, key, width);
    const handle =
      cell < 0
        ? new MetricSeries(
            this,
            width <= this.spare.length ? this.spare : new Float64Array(width),
            0,
            family.buckets,
          )
        : new MetricSeries(this, this.local, cell, family.buckets);
    byKey.set(key, handle);
    return handle;
  }

  /** Copies this writer's row into shared memory, if anything changed (readers see it from now on). */
  publish(): void {
    if (!this.dirty) return;
    this.dirty = false;
    const m = this.memory;
    const used = m.usedCells;
    m.bumpSeq(this.row);
    m.cells.set(this.local.subarray(0, used), this.row * m.cellsPerRow);
    m.bumpSeq(this.row);
  }
}
