import { randomFillSync, randomUUID } from 'node:crypto';

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

function randomHex(bytes: number): string {
  if (used + bytes > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  const hex = pool.toString('hex', used, used + bytes);
  used += bytes;
  return hex;
}

/** A new span id (8 random bytes, hex). */
export function newSpanId(): string {
  let id = randomHex(8);
  while (id === ZERO_SPAN) id = randomHex(8);
  return id;
}

/** The traceparent to send upstream given the one received (or none). */
export function nextTraceparent(incoming: string | undefined): string {
  if (incoming !== undefined) {
    const m = TRACEPARENT.exec(incoming.trim());
    const valid = m !== null && m[1] !== 'ff' && (m[1] !== '00' || m[5] === undefined);
    if (valid && m[2] !== ZERO_TRACE && m[3] !== ZERO_SPAN) {
      return `${m[1] === '00' ? '00' : m[1]}-${m[2]}-${newSpanId()}-${m[4]}`;
    }
  }
  let trace = randomHex(16);
  while (trace === ZERO_TRACE) trace = randomHex(16);
  return `00-${trace}-${newSpanId()}-01`;
}

/** A new request id (UUID v4). */
export function newRequestId(): string {
  return randomUUID();
}
