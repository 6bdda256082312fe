/**
 * Writing metrics: a thread's writer over one row of a metrics memory, and the series handles it gives.
 *
 * A writer updates a private copy of its row with plain additions (the hot path pays an addition and an
 * array store) and publishes it into its shared row every few milliseconds under a sequence lock: the
 * sequence is odd while the row is being copied, and a reader that saw it change reads the row again. A
 * scrape is therefore at most one publish interval behind the loops.
 */
import { KEY_SEPARATOR, type MetricFamily, widthOf } from './family.ts';
import { MetricsMemory } from './memory.ts';

/** A series' update handle: a counter or gauge cell, or a histogram's cells, in its writer's row. */
export class MetricSeries {
  private local: Float64Array;
  private at: number;
  private readonly bounds: readonly number[];
  private readonly writer: MetricsWriter;
  /** @internal Its directory entry (-1: it found no room). */
  readonly entry: number;
  /** @internal Its label values, joined. */
  readonly key: string;
  /** @internal Its family's cells a series. */
  readonly width: number;

  /** @internal Use `MetricsWriter.series`. */
  constructor(
    writer: MetricsWriter,
    local: Float64Array,
    at: number,
    bounds: readonly number[],
    entry: number,
    key: string,
  ) {
    this.writer = writer;
    this.local = local;
    this.at = at;
    this.bounds = bounds;
    this.entry = entry;
    this.key = key;
    this.width = bounds.length === 0 ? 1 : bounds.length + 3;
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

  /** @internal The series was let go: updates from a handle kept somewhere go nowhere from now on. */
  detach(spare: Float64Array): void {
    this.local = spare;
    this.at = 0;
  }
}

/**
 * A thread's writer over one row: series handles (made once, then updated with no allocation) and
 * `publish`, which the owner calls every few milliseconds. Only one writer may own a row at a time; a
 * writer made for a row that had one before (a restarted loop) continues its totals and holds the series
 * its predecessor held.
 */
export class MetricsWriter {
  readonly memory: MetricsMemory;
  readonly row: number;
  private readonly local: Float64Array;
  /** Cells of series that found no room or were let go: written, never published. */
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
   * The series of `family` with these label values (one per label name, in order), made once and held by
   * this writer until {@link release}d: keep the handle. A series the memory has no room for still takes
   * updates (they are counted nowhere).
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
    const entry = f < 0 ? -1 : m.claim(f, key, width, family.type === 'gauge', this.row);
    const cell = entry < 0 ? -1 : m.cellOf(entry);
    const handle =
      cell < 0
        ? new MetricSeries(this, this.spareFor(width), 0, family.buckets, entry, key)
        : new MetricSeries(this, this.local, cell, family.buckets, entry, key);
    byKey.set(key, handle);
    return handle;
  }

  private spareFor(width: number): Float64Array {
    return width <= this.spare.length ? this.spare : new Float64Array(width);
  }

  /**
   * Lets a series go: this row's share of a counter or histogram is carried (the totals stay), a gauge's
   * goes. Once no writer holds it the series leaves the exposition; made again, it comes back with its
   * totals, unless the memory needed its room meanwhile (then from zero). The handle takes updates still,
   * counted nowhere: ask for the series again for a live handle.
   */
  release(family: MetricFamily, handle: MetricSeries): void {
    const byKey = this.handles.get(family);
    if (byKey?.get(handle.key) !== handle) return; // let go before, or not this writer's
    byKey.delete(handle.key);
    handle.detach(this.spareFor(handle.width));
    if (handle.entry < 0) return;
    this.letGo(handle.entry, this.memory.cellOf(handle.entry), handle.width);
  }

  /**
   * Lets go every series of `family` this row holds whose label values `which` picks, handles made by
   * this writer or series its predecessor on the row held (a restarted loop's); returns how many.
   */
  releaseSeries(family: MetricFamily, which: (values: readonly string[]) => boolean): number {
    const split = (key: string) => (family.labels.length === 0 ? [] : key.split(KEY_SEPARATOR));
    const byKey = this.handles.get(family);
    let n = 0;
    if (byKey !== undefined)
      for (const [key, handle] of byKey)
        if (handle.entry < 0 && which(split(key))) {
          byKey.delete(key); // a series without room: nothing held, forget the handle
          handle.detach(this.spareFor(handle.width));
        }
    const f = this.memory.family(family);
    if (f < 0) return 0;
    for (const held of this.memory.held(f, this.row)) {
      if (!which(split(held.key))) continue;
      const handle = byKey?.get(held.key);
      if (handle !== undefined) {
        byKey!.delete(held.key);
        handle.detach(this.spareFor(handle.width));
      }
      this.letGo(held.entry, held.cell, held.width);
      n++;
    }
    return n;
  }

  private letGo(entry: number, cell: number, width: number): void {
    if (cell < 0) {
      this.memory.release(entry, this.row);
      return;
    }
    // This row's latest counts (published or not) go to the carry; its copy starts from zero if made again.
    this.memory.release(entry, this.row, this.local.subarray(cell, cell + width));
    this.local.fill(0, cell, cell + width);
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
