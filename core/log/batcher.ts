import zlib, { deflateSync, gzipSync } from 'node:zlib';
import { KINDS, LEVELS, metaKind, metaLevel, metaProducer, type RingMemory } from './ring.ts';
import type { Compression, LogBatch } from './sinks.ts';

/** Writes a non-negative integer (a millisecond timestamp) in decimal. */
function putInteger(buf: Buffer, p: number, n: number): number {
  const text = String(Math.floor(n));
  for (let i = 0; i < text.length; i++) buf[p + i] = text.charCodeAt(i);
  return p + text.length;
}

/** Batch limits: a batch closes at whichever comes first. */
export interface BatchLimits {
  /** Records per batch (default 1000). */
  maxRecords: number;
  /** NDJSON bytes per batch (default 1 MiB). */
  maxBytes: number;
  /** Milliseconds the oldest record of a batch may wait (default 200). */
  maxDelay: number;
}

/**
 * Turns ring records into NDJSON batches without building strings: each line is the record's envelope
 * (`{"ts":…,"level":…,"loop":…,"kind":…,`) followed by the producer's JSON object minus its opening brace,
 * copied byte for byte out of the ring into one batch buffer.
 */
export class Batcher {
  private readonly ring: RingMemory;
  private readonly limits: BatchLimits;
  private readonly compression: Compression;
  private readonly level: number;
  private buf: Buffer;
  private pos = 0;
  /** Records in the open batch (drop reports included). */
  records = 0;
  /** User records in the open batch (drop reports excluded). */
  userRecords = 0;
  /** When the open batch got its first record. */
  openedAt = 0;
  private readonly tails = new Map<number, Buffer>();
  /** Bound `visit`, for RingMemory.drain. */
  readonly visit: (meta: number, time: number, start: number, end: number) => void;

  constructor(ring: RingMemory, limits: BatchLimits, compression: Compression, level = 1) {
    this.ring = ring;
    this.limits = limits;
    this.compression = compression;
    this.level = level;
    this.buf = Buffer.allocUnsafe(limits.maxBytes + 64 * 1024);
    this.visit = (meta, time, start, end) => this.add(meta, time, start, end);
  }

  /** Room for how many more records before the batch is full by count. */
  get room(): number {
    return this.limits.maxRecords - this.records;
  }

  get full(): boolean {
    return this.records >= this.limits.maxRecords || this.pos >= this.limits.maxBytes;
  }

  /** `"level":"info","loop":0,"kind":"log",` per (level, kind, producer), built once. */
  private tail(meta: number): Buffer {
    const key = meta >>> 20;
    let t = this.tails.get(key);
    if (t === undefined) {
      const producer = metaProducer(meta);
      t = Buffer.from(
        `,"level":"${LEVELS[metaLevel(meta)]}","loop":${loopLabel(this.ring.producerLoop(producer))},"producer":${producer},"kind":"${KINDS[metaKind(meta)]}"`,
      );
      this.tails.set(key, t);
    }
    return t;
  }

  private add(meta: number, time: number, start: number, end: number): void {
    const len = end - start;
    const need = len + 160;
    if (this.pos + need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + need));
      this.buf.copy(grown, 0, 0, this.pos);
      this.buf = grown;
    }
    if (this.records === 0) this.openedAt = Date.now();
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = 0x7b; // {"ts":
    buf[p++] = 0x22;
    buf[p++] = 0x74;
    buf[p++] = 0x73;
    buf[p++] = 0x22;
    buf[p++] = 0x3a;
    p = putInteger(buf, p, time);
    const tail = this.tail(meta);
    tail.copy(buf, p);
    p += tail.length;
    // The payload is a JSON object: keep everything after its '{' (an empty object just closes ours).
    const u8 = this.ring.u8;
    if (len > 2) {
      buf[p++] = 0x2c;
      u8.copy(buf, p, start + 1, end);
      p += len - 1;
    } else {
      buf[p++] = 0x7d;
    }
    buf[p++] = 0x0a;
    this.pos = p;
    this.records++;
    if (metaKind(meta) !== 3) this.userRecords++;
  }

  /** Closes the open batch: encodes it and starts a new one. Null when empty. */
  take(): LogBatch | null {
    if (this.records === 0) return null;
    const raw = this.buf.subarray(0, this.pos);
    let data: Buffer;
    switch (this.compression) {
      case 'gzip':
        data = gzipSync(raw, { level: this.level });
        break;
      case 'deflate':
        data = deflateSync(raw, { level: this.level });
        break;
      case 'zstd':
        data = (zlib as unknown as { zstdCompressSync(b: Buffer): Buffer }).zstdCompressSync(raw);
        break;
      default:
        data = Buffer.from(raw);
    }
    const batch: LogBatch = {
      data,
      encoding: this.compression,
      records: this.userRecords,
      rawBytes: this.pos,
    };
    this.pos = 0;
    this.records = 0;
    this.userRecords = 0;
    return batch;
  }
}

/** A record's `loop` field: the loop's index, or "main" for a producer off the loops. */
function loopLabel(loop: number): string {
  return loop < 0 ? '"main"' : String(loop);
}
