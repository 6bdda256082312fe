import fastJson from 'fast-json-stringify';
import { hash32 } from '../hash.ts';
import { type AccessRecord, errorReplacer, type LogFields, type Logger } from '../logger.ts';
import { writeUtf8 } from '../node-internals.ts';
import {
  C_COMMITTED,
  C_DROP_FULL,
  C_DROP_LARGE,
  C_DROP_LEVEL,
  C_OFFERED,
  C_SAMPLED,
  KIND_ACCESS,
  KIND_DROPS,
  KIND_LOG,
  KIND_METRIC,
  LEVELS,
  type LevelName,
  MAX_PAYLOAD,
  meta,
  RECORD_HEADER,
  RESERVE_TOO_LARGE,
  RingMemory,
} from './ring.ts';

const ACCESS_SCHEMA = {
  type: 'object',
  properties: {
    method: { type: 'string' },
    path: { type: 'string' },
    status: { type: 'integer' },
    bytes: { type: 'integer' },
    duration: { type: 'number' },
    remote: { type: 'string' },
    traceId: { type: 'string' },
    requestId: { type: 'string' },
    route: { type: 'string' },
    domain: { type: 'string' },
  },
} as const;
const serializeAccess = fastJson(ACCESS_SCHEMA) as (record: AccessRecord) => string;

export const LEVEL_FATAL = 0;
export const LEVEL_ERROR = 1;
export const LEVEL_WARN = 2;
export const LEVEL_INFO = 3;
export const LEVEL_DEBUG = 4;
export const LEVEL_TRACE = 5;

const SCRATCH = 8192;

/**
 * Writes `"name":"text"` (with a leading comma unless first) as JSON into `buf` at `p`. Returns the end, or
 * -1 when the text has a character outside ASCII or the buffer is too small (the caller falls back).
 */
function putField(buf: Buffer, p: number, name: string, text: string, first: boolean): number {
  if (p + name.length + text.length * 2 + 8 > buf.length) return -1;
  if (!first) buf[p++] = 0x2c;
  buf[p++] = 0x22;
  for (let i = 0; i < name.length; i++) buf[p++] = name.charCodeAt(i);
  buf[p++] = 0x22;
  buf[p++] = 0x3a;
  buf[p++] = 0x22;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80 || c < 0x20) return -1;
    if (c === 0x22 || c === 0x5c) buf[p++] = 0x5c;
    buf[p++] = c;
  }
  buf[p++] = 0x22;
  return p;
}

function putNumberField(buf: Buffer, p: number, name: string, value: number): number {
  const text = Number.isFinite(value) ? String(value) : 'null';
  if (p + name.length + text.length + 4 > buf.length) return -1;
  buf[p++] = 0x2c;
  buf[p++] = 0x22;
  for (let i = 0; i < name.length; i++) buf[p++] = name.charCodeAt(i);
  buf[p++] = 0x22;
  buf[p++] = 0x3a;
  for (let i = 0; i < text.length; i++) buf[p++] = text.charCodeAt(i);
  return p;
}

/** An access record as JSON bytes (the same text fast-json-stringify makes), or -1 to fall back. */
function writeAccess(buf: Buffer, r: AccessRecord): number {
  buf[0] = 0x7b;
  let p = putField(buf, 1, 'method', r.method, true);
  if (p > 0) p = putField(buf, p, 'path', r.path, false);
  if (p > 0) p = putNumberField(buf, p, 'status', r.status);
  if (p > 0) p = putNumberField(buf, p, 'bytes', r.bytes);
  if (p > 0) p = putNumberField(buf, p, 'duration', r.duration);
  if (p > 0) p = putField(buf, p, 'remote', r.remote, false);
  if (p > 0 && r.traceId !== undefined) p = putField(buf, p, 'traceId', r.traceId, false);
  if (p > 0 && r.requestId !== undefined) p = putField(buf, p, 'requestId', r.requestId, false);
  if (p > 0 && r.route !== undefined) p = putField(buf, p, 'route', r.route, false);
  if (p > 0 && r.domain !== undefined) p = putField(buf, p, 'domain', r.domain, false);
  if (p < 0 || p >= buf.length) return -1;
  buf[p++] = 0x7d;
  return p;
}

/**
 * A producer of the log ring: the logger every loop (and the main thread) writes through. It never blocks:
 * a record that does not fit is dropped and counted, and the drops are reported in a record of their own as
 * soon as one fits again. Sampling happens before serialization, so a sampled-out record costs a hash or a
 * random number and nothing else. Errors and fatals are always kept; `access` keeps 5xx always.
 *
 * Not thread-safe by itself: each thread makes its own producer over the shared ring (that is the point).
 */
export class RingLogger implements Logger {
  readonly ring: RingMemory;
  readonly producer: number;
  readonly loop: number;
  /** This producer's reservation stamp (its id and incarnation). */
  private readonly stamp: number;
  private readonly droppedByLevel = new Uint32Array(LEVELS.length);
  private dropsPending = false;
  private rng: number;
  private readonly scratch = Buffer.allocUnsafe(SCRATCH);

  /**
   * A producer writing for `loop`. With `loopOwned` (the engine's own loggers) it takes the loop's fixed id,
   * so a restarted loop does not use up ids; otherwise it claims a new one.
   */
  constructor(ring: RingMemory | SharedArrayBuffer, loop = 0, loopOwned = false) {
    this.ring = ring instanceof RingMemory ? ring : new RingMemory(ring);
    this.producer = loopOwned ? this.ring.loopProducer(loop) : this.ring.claimProducer(loop);
    this.stamp = this.ring.stampOf(this.producer);
    this.loop = loop;
    this.rng = (Math.random() * 0xffffffff) >>> 0 || 1;
  }

  fatal(message: string, fields?: LogFields): void {
    this.log(LEVEL_FATAL, message, fields);
  }
  error(message: string, fields?: LogFields): void {
    this.log(LEVEL_ERROR, message, fields);
  }
  warn(message: string, fields?: LogFields): void {
    this.log(LEVEL_WARN, message, fields);
  }
  info(message: string, fields?: LogFields): void {
    this.log(LEVEL_INFO, message, fields);
  }
  debug(message: string, fields?: LogFields): void {
    this.log(LEVEL_DEBUG, message, fields);
  }
  trace(message: string, fields?: LogFields): void {
    this.log(LEVEL_TRACE, message, fields);
  }

  /** A log record at `level` (0 fatal .. 5 trace); `key` makes sampling deterministic for that key. */
  log(level: number, message: string, fields?: LogFields, key?: string): void {
    if (!this.keep(level, KIND_LOG, key)) return;
    let payload: string;
    try {
      payload = JSON.stringify(
        fields === undefined ? { msg: message } : { msg: message, ...fields },
        errorReplacer,
      );
    } catch {
      payload = JSON.stringify({ msg: message, fieldsError: 'fields could not be serialized' });
    }
    this.write(level, KIND_LOG, payload);
  }

  /**
   * An access-log record. Level follows the status (5xx error, 4xx warn, else info); `key` (e.g. a user id)
   * makes sampling deterministic: with an access rate of 1%, 1% of keys get every request logged.
   */
  access(record: AccessRecord, key?: string): void {
    const level = record.status >= 500 ? LEVEL_ERROR : record.status >= 400 ? LEVEL_WARN : LEVEL_INFO;
    if (!this.keep(level, KIND_ACCESS, key)) return;
    // The common case (ASCII strings) is written as bytes into a private scratch buffer, then copied into
    // the ring in one go; fast-json-stringify covers the rest.
    const n = writeAccess(this.scratch, record);
    if (n < 0) this.write(level, KIND_ACCESS, serializeAccess(record));
    else this.writeBytes(level, KIND_ACCESS, this.scratch, n);
  }

  /** A metric sample. */
  metric(name: string, value: number, fields?: LogFields): void {
    if (!this.keep(LEVEL_INFO, KIND_METRIC, undefined)) return;
    this.write(LEVEL_INFO, KIND_METRIC, JSON.stringify({ name, value, ...fields }, errorReplacer));
  }

  /** Writes an already serialized JSON object as a record (for codecs with their own serializers). */
  raw(level: number, kind: number, json: string): void {
    if (!this.keep(level, kind, undefined)) return;
    this.write(level, kind, json);
  }

  /** The sampling decision (and its counting). */
  private keep(level: number, kind: number, key: string | undefined): boolean {
    const ring = this.ring;
    ring.count(this.producer, C_OFFERED);
    if (level <= LEVEL_ERROR) return true;
    const rate = Math.min(ring.levelRate(level), ring.kindRate(kind));
    if (rate >= 1) return true;
    let x: number;
    if (key !== undefined) {
      x = hash32(key) / 4294967296;
    } else {
      // xorshift32: sampling needs speed and spread, not unpredictability.
      let s = this.rng;
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      this.rng = s >>> 0;
      x = this.rng / 4294967296;
    }
    if (x < rate) return true;
    ring.count(this.producer, C_SAMPLED);
    return false;
  }

  private write(level: number, kind: number, payload: string): void {
    const ring = this.ring;
    const bytes = Buffer.byteLength(payload);
    if (bytes > MAX_PAYLOAD) {
      ring.count(this.producer, C_DROP_LARGE);
      this.noteDrop(level);
      return;
    }
    if (this.dropsPending) this.reportDrops();
    const at = ring.reserve(bytes, this.stamp);
    if (at < 0) {
      ring.count(this.producer, at === RESERVE_TOO_LARGE ? C_DROP_LARGE : C_DROP_FULL);
      this.noteDrop(level);
      return;
    }
    this.fill(at, bytes, level, kind, payload);
    ring.count(this.producer, C_COMMITTED);
  }

  /** Like `write`, for a payload already encoded in `bytes[0, n)`. */
  private writeBytes(level: number, kind: number, bytes: Buffer, n: number): void {
    const ring = this.ring;
    if (this.dropsPending) this.reportDrops();
    const at = ring.reserve(n, this.stamp);
    if (at < 0) {
      ring.count(this.producer, at === RESERVE_TOO_LARGE ? C_DROP_LARGE : C_DROP_FULL);
      this.noteDrop(level);
      return;
    }
    ring.i32[(at >> 2) + 1] = meta(n, level, kind, this.producer);
    ring.f64[(at + 8) >> 3] = Date.now();
    bytes.copy(ring.u8, at + RECORD_HEADER, 0, n);
    ring.commit(at, n);
    ring.count(this.producer, C_COMMITTED);
  }

  private fill(at: number, bytes: number, level: number, kind: number, payload: string): void {
    const ring = this.ring;
    ring.i32[(at >> 2) + 1] = meta(bytes, level, kind, this.producer);
    ring.f64[(at + 8) >> 3] = Date.now();
    // The native encoder beats a byte loop here: stores into shared memory are slow from JavaScript.
    writeUtf8(ring.u8, payload, at + RECORD_HEADER, bytes);
    ring.commit(at, bytes);
  }

  private noteDrop(level: number): void {
    this.droppedByLevel[level]!++;
    this.ring.count(this.producer, C_DROP_LEVEL + level);
    this.dropsPending = true;
  }

  /** Tries to report this producer's drops since the last report (a record of kind `drops`). */
  private reportDrops(): void {
    const counts: Partial<Record<LevelName, number>> = {};
    let total = 0;
    for (let l = 0; l < LEVELS.length; l++) {
      const n = this.droppedByLevel[l]!;
      if (n > 0) {
        counts[LEVELS[l]!] = n;
        total += n;
      }
    }
    const payload = JSON.stringify({ dropped: total, byLevel: counts, producer: this.producer });
    const at = this.ring.reserve(payload.length, this.stamp);
    if (at < 0) return; // still full: report later
    this.fill(at, payload.length, LEVEL_WARN, KIND_DROPS, payload);
    this.droppedByLevel.fill(0);
    this.dropsPending = false;
  }
}

/** Sampling settings: a rate in [0, 1] per level and per kind (the lower of the two applies). */
export interface SamplingOptions {
  levels?: Partial<Record<LevelName, number>>;
  kinds?: Partial<Record<'log' | 'access' | 'metric', number>>;
  /** Records below this level are not logged at all (rate 0). */
  level?: LevelName;
}

/** Writes sampling rates into the ring (any thread; producers see them on their next record). */
export function setSampling(ring: RingMemory, options: SamplingOptions): void {
  const min = options.level === undefined ? LEVELS.length - 1 : LEVELS.indexOf(options.level);
  for (let l = 0; l < LEVELS.length; l++) {
    const rate = l > min ? 0 : (options.levels?.[LEVELS[l]!] ?? 1);
    ring.rates[l] = Math.max(0, Math.min(1, rate));
  }
  const kinds = ['log', 'access', 'metric'] as const;
  kinds.forEach((k, i) => {
    ring.rates[8 + i] = Math.max(0, Math.min(1, options.kinds?.[k] ?? 1));
  });
  ring.rates[8 + KIND_DROPS] = 1;
}

export type { AccessRecord };
export { KIND_ACCESS, KIND_LOG, KIND_METRIC };
