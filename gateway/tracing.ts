import { randomFillSync } from 'node:crypto';
import { latin1 } from '../core/index.ts';

/**
 * Request ids and W3C Trace Context (`traceparent`, https://www.w3.org/TR/trace-context/) for proxied
 * requests: a valid incoming trace keeps its trace id and gets a new span id for this hop; anything else
 * starts a new trace.
 */

// Lower-case hex only (upper case is invalid and restarts the trace); versions after 00 may add fields.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

// Random bytes drawn 4 KiB at a time: ids need uniqueness, and one syscall per 170 ids is cheap.
const pool = Buffer.allocUnsafe(4096);
let used = pool.length;
const HEX = Buffer.from('0123456789abcdef', 'latin1');
/** Ids are spelled here and decoded once: one native call per id instead of one per piece. */
const scratch = Buffer.allocUnsafe(64);

/** Takes `bytes` random bytes from the pool; returns where they start. */
function draw(bytes: number): number {
  if (used + bytes > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const at = used;
  used += bytes;
  return at;
}

/** Spells `bytes` pool bytes from `from` as hex into the scratch at `at`; false if all were zero. */
function hexInto(at: number, from: number, bytes: number): boolean {
  let any = 0;
  for (let k = 0; k < bytes; k++) {
    const b = pool[from + k]!;
    any |= b;
    scratch[at + 2 * k] = HEX[b >> 4]!;
    scratch[at + 2 * k + 1] = HEX[b & 15]!;
  }
  return any !== 0;
}

/** A new span id (8 random bytes, hex, never all zero). */
export function newSpanId(): string {
  while (!hexInto(0, draw(8), 8));
  return latin1(scratch, 0, 16);
}

/**
 * A `traceparent` that continues its trace, as [whole, version, trace id, span id, flags]; null for one that
 * starts a new trace (malformed, version ff, version 00 with more fields, an all-zero id).
 */
export function validTraceparent(incoming: string | undefined): RegExpExecArray | null {
  if (incoming === undefined) return null;
  const m = TRACEPARENT.exec(incoming.trim());
  if (m === null || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return null;
  return m[2] === ZERO_TRACE || m[3] === ZERO_SPAN ? null : m;
}

/** The traceparent to send upstream given the one received (or none). */
export function nextTraceparent(incoming: string | undefined): string {
  const m = validTraceparent(incoming);
  if (m !== null) return `${m[1]}-${m[2]}-${newSpanId()}-${m[4]}`;
  // 00-<trace id: 16 bytes>-<span id: 8 bytes>-01, neither all zero (W3C Trace Context).
  scratch[0] = scratch[1] = 0x30; // 00-
  scratch[2] = 0x2d;
  while (!hexInto(3, draw(16), 16));
  scratch[35] = 0x2d;
  while (!hexInto(36, draw(8), 8));
  scratch[52] = 0x2d; // -01
  scratch[53] = 0x30;
  scratch[54] = 0x31;
  return latin1(scratch, 0, 55);
}

/** A new request id (a random UUID, version 4, RFC 9562). */
export function newRequestId(): string {
  const from = draw(16);
  pool[from + 6] = (pool[from + 6]! & 0x0f) | 0x40;
  pool[from + 8] = (pool[from + 8]! & 0x3f) | 0x80;
  // 8-4-4-4-12 hex digits
  hexInto(0, from, 4);
  scratch[8] = 0x2d;
  hexInto(9, from + 4, 2);
  scratch[13] = 0x2d;
  hexInto(14, from + 6, 2);
  scratch[18] = 0x2d;
  hexInto(19, from + 8, 2);
  scratch[23] = 0x2d;
  hexInto(24, from + 10, 6);
  return latin1(scratch, 0, 36);
}
