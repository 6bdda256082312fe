// A pure driver of netloom's HTTP/1.1 request parser (HeadParser + BodyDecoder) over a byte sequence delivered
// in chunks, the way the server's Exchange runs it: parse a head; frame the body (chunked if the head says so,
// else Content-Length if > 0, else none); bytes after a complete message start the next one; the unconsumed
// bytes of an unfinished message stay in the connection's buffer and the next chunk is appended to them.
//
// Like llhttp, the driver stops after a message that asks for a protocol change (CONNECT right after its head;
// `Connection: upgrade` with a non-empty `Upgrade` field after its body) with outcome 'upgrade', and after a
// message that ends the connection (HTTP/1.1 `Connection: close`, HTTP/1.0 without keep-alive) with outcome
// 'closed' when bytes follow it (the server closes and never reads them).
import {
  BODY_CHUNKED,
  BODY_LENGTH,
  BODY_NONE,
  BodyDecoder,
  type BodySink,
} from '../../protocols/http1/body.ts';
import { HEAD_ERROR, HeadParser, latin1, NEED_MORE } from '../../protocols/http1/head.ts';
import { prng } from '../helpers.ts';

/** A header or trailer field as sent: [name, value], value without surrounding whitespace (latin1). */
export type Field = [name: string, value: string];

export interface ParsedMessage {
  method: string;
  target: string;
  versionMajor: number;
  versionMinor: number;
  headers: Field[];
  body: Buffer;
  trailers: Field[];
}

export interface DrivenMessage extends ParsedMessage {
  /** Absolute offset of the first byte of the request line (after any skipped empty lines). */
  start: number;
  /** Absolute offset right after the head (after its CRLFCRLF). */
  headEnd: number;
  /** Absolute offset right after the message (head and body). */
  end: number;
  /** The server keeps the connection open after this message. */
  keepAlive: boolean;
  /** The message asks to leave HTTP (CONNECT, or `Connection: upgrade` with a non-empty `Upgrade`). */
  upgrade: boolean;
}

/**
 * - success: every byte was consumed by complete messages (only empty lines may remain);
 * - error: the parser or the server refused the input (`error` says why);
 * - incomplete: the input ends inside a message;
 * - upgrade: parsing stopped after a message that leaves HTTP;
 * - closed: a message ended the connection and bytes followed it.
 */
export type DriveOutcome = 'success' | 'error' | 'incomplete' | 'upgrade' | 'closed';

export interface DriveError {
  status: number;
  reason: string;
  /** Which part refused: the head parser, the body decoder, or a server check after the head (413, 417). */
  phase: 'head' | 'body' | 'server';
  /** Absolute offset of the first unconsumed byte when the error was raised (not the exact byte). */
  at: number;
}

export interface DriveResult {
  outcome: DriveOutcome;
  /** Complete messages, in order. */
  messages: DrivenMessage[];
  error?: DriveError;
  /** The input ended inside a message (outcome 'incomplete'). */
  incomplete: boolean;
  /** With 'incomplete': the message whose head was parsed and whose body is unfinished (body so far). */
  pending?: DrivenMessage;
  /** Absolute offset where parsing stopped (after the last consumed byte). */
  consumed: number;
}

/** How the input is cut into reads: all at once, one byte per read, random sizes from a seed, or explicit sizes. */
export type Chunking = 'whole' | 'bytes' | { seed: number; maxChunk?: number } | readonly number[];

export interface DriveLimits {
  maxStartLine: number;
  maxHeaderBytes: number;
  maxHeaders: number;
  maxBodySize: number;
  maxChunkLine: number;
}

export interface DriveOptions {
  /** Refuse HTTP/1.1 requests without Host (the server's default is true; llhttp replays use false). */
  requireHost?: boolean;
  /** Read boundaries; default 'whole'. */
  chunking?: Chunking;
  /** Parser limits; defaults are the server's. */
  limits?: Partial<DriveLimits>;
}

/** The server's defaults (protocols/http1/server.ts). */
export const SERVER_LIMITS: Readonly<DriveLimits> = {
  maxStartLine: 8 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxHeaders: 100,
  maxBodySize: 1024 * 1024,
  maxChunkLine: 4 * 1024,
};

const EMPTY = Buffer.alloc(0);

/** Cuts `input` into the reads `chunking` describes (views of `input`, no copies). */
export function splitInput(input: Buffer, chunking: Chunking = 'whole'): Buffer[] {
  if (input.length === 0) return [];
  if (chunking === 'whole') return [input];
  const out: Buffer[] = [];
  if (chunking === 'bytes') {
    for (let i = 0; i < input.length; i++) out.push(input.subarray(i, i + 1));
    return out;
  }
  if (Array.isArray(chunking)) {
    let i = 0;
    for (const size of chunking as readonly number[]) {
      if (i >= input.length) break;
      const n = Math.max(1, Math.floor(size));
      out.push(input.subarray(i, i + n));
      i += n;
    }
    if (i < input.length) out.push(input.subarray(i));
    return out;
  }
  const spec = chunking as { seed: number; maxChunk?: number };
  const rand = prng(spec.seed);
  const max = Math.max(1, spec.maxChunk ?? 16);
  for (let i = 0; i < input.length; ) {
    const n = 1 + Math.floor(rand() * max);
    out.push(input.subarray(i, i + n));
    i += n;
  }
  return out;
}

/** Collects decoded body bytes (copies: the decoder lends views of a buffer that changes). */
class BodyCollector implements BodySink {
  parts: Buffer[] = [];
  size = 0;
  onBody(buf: Buffer, start: number, end: number): void {
    this.parts.push(Buffer.from(buf.subarray(start, end)));
    this.size += end - start;
  }
  take(): Buffer {
    const body = this.parts.length === 0 ? EMPTY : Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    return body;
  }
}

/**
 * Whether `buf[from, end)` is nothing but empty lines (CRLF pairs, the last one possibly still missing its LF):
 * what the head parser skips before a request line. Such bytes do not start a message, for llhttp either.
 */
function onlyEmptyLines(buf: Buffer, from: number): boolean {
  let i = from;
  while (i + 1 < buf.length && buf[i] === 0x0d && buf[i + 1] === 0x0a) i += 2;
  return i >= buf.length || (i === buf.length - 1 && buf[i] === 0x0d);
}

/**
 * Runs the parser over `input` delivered as `options.chunking` says. Never throws for any input unless the
 * parser itself throws (which is a bug the caller should report).
 */
export function drive(input: Uint8Array, options: DriveOptions = {}): DriveResult {
  const limits = { ...SERVER_LIMITS, ...options.limits };
  const head = new HeadParser('request', {
    maxStartLine: limits.maxStartLine,
    maxHeaderBytes: limits.maxHeaderBytes,
    maxHeaders: limits.maxHeaders,
    requireHost: options.requireHost ?? false,
  });
  const decoder = new BodyDecoder({
    maxBodySize: limits.maxBodySize,
    maxChunkLine: limits.maxChunkLine,
    maxTrailerBytes: limits.maxHeaderBytes,
    maxTrailers: limits.maxHeaders,
  });
  const collector = new BodyCollector();
  const whole = Buffer.isBuffer(input)
    ? input
    : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const messages: DrivenMessage[] = [];

  let pending: Buffer = EMPTY; // the connection's buffer: unconsumed bytes
  let base = 0; // absolute offset of pending[0]
  let current: DrivenMessage | null = null; // head parsed, body in progress
  let error: DriveError | undefined;
  let stop: 'upgrade' | 'closed' | 'error' | null = null;

  for (const chunk of splitInput(whole, options.chunking)) {
    const buf: Buffer = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    const end = buf.length;
    let i = 0;
    // Every pass consumes bytes, completes a message or leaves the loop: a pass count beyond this is a stall.
    let passes = end + 8;
    while (stop === null) {
      if (--passes < 0) throw new Error(`parse driver made no progress at offset ${base + i}`);
      if (current === null) {
        if (i >= end) break;
        const n = head.parse(buf, i, end);
        if (n === NEED_MORE) break;
        if (n === HEAD_ERROR) {
          error = { status: head.errorStatus, reason: head.errorReason, phase: 'head', at: base + i };
          stop = 'error';
          break;
        }
        if (n < 0 || n > end - i) throw new Error(`head parser returned ${n} with ${end - i} bytes`);
        let lineStart = i;
        while (buf[lineStart] === 0x0d && buf[lineStart + 1] === 0x0a) lineStart += 2;
        const headers: Field[] = [];
        for (let k = 0; k < head.fieldCount; k++) headers.push([head.name(buf, k), head.value(buf, k)]);
        const keepAlive =
          head.minor === 1 ? !head.connectionClose : head.connectionKeepAlive && !head.connectionClose;
        const msg: DrivenMessage = {
          method: head.method,
          target: latin1(buf, head.targetStart, head.targetEnd),
          versionMajor: head.major,
          versionMinor: head.minor,
          headers,
          body: EMPTY,
          trailers: [],
          start: base + lineStart,
          headEnd: base + i + n,
          end: 0,
          keepAlive,
          upgrade: head.method === 'CONNECT' || (head.connectionUpgrade && head.upgradeField >= 0),
        };
        i += n;
        // The server's own checks once the head is in (Exchange.startRequest).
        if (head.contentLength > limits.maxBodySize) {
          error = { status: 413, reason: 'body too large', phase: 'server', at: base + i };
          stop = 'error';
          break;
        }
        if (head.expectOther) {
          error = { status: 417, reason: 'unsupported expectation', phase: 'server', at: base + i };
          stop = 'error';
          break;
        }
        if (head.method === 'CONNECT') {
          // llhttp: a CONNECT request has no body; the tunnel starts right after the head.
          msg.end = base + i;
          messages.push(msg);
          stop = 'upgrade';
          break;
        }
        let mode = BODY_NONE;
        if (head.chunked) mode = BODY_CHUNKED;
        else if (head.contentLength > 0) mode = BODY_LENGTH;
        decoder.begin(mode, head.contentLength);
        current = msg;
      }
      if (!decoder.done) {
        if (i >= end) break;
        const n = decoder.decode(buf, i, end, collector);
        if (n < 0) {
          error = { status: decoder.errorStatus, reason: decoder.errorReason, phase: 'body', at: base + i };
          stop = 'error';
          break;
        }
        if (n > end - i) throw new Error(`body decoder consumed ${n} of ${end - i} bytes`);
        i += n;
        if (!decoder.done) break; // everything usable was consumed: wait for the next read
      }
      const msg: DrivenMessage = current;
      msg.body = collector.take();
      msg.trailers = decoder.trailers.map(([name, value]): Field => [name, value]);
      msg.end = base + i;
      messages.push(msg);
      current = null;
      if (msg.upgrade) stop = 'upgrade';
      else if (!msg.keepAlive) stop = 'closed';
    }
    if (stop !== null) {
      base += i;
      pending = EMPTY;
      break;
    }
    pending = buf.subarray(i);
    base += i;
  }

  const consumed = base;
  if (stop === 'error') return { outcome: 'error', messages, error, incomplete: false, consumed };
  if (stop === 'upgrade') return { outcome: 'upgrade', messages, incomplete: false, consumed };
  if (stop === 'closed') {
    // The server closes: bytes after the message are never read.
    return { outcome: consumed < whole.length ? 'closed' : 'success', messages, incomplete: false, consumed };
  }
  if (current !== null) {
    const partial: DrivenMessage = current;
    partial.body = collector.take();
    return { outcome: 'incomplete', messages, incomplete: true, consumed, pending: partial };
  }
  const incomplete = !onlyEmptyLines(pending, 0);
  return { outcome: incomplete ? 'incomplete' : 'success', messages, incomplete, consumed };
}

/**
 * Ways an unfinished input could go on: the end of a line, of a head or trailer section, of a request line
 * ("HTTP/1.1"), a field line.
 */
export const CONTINUATIONS: readonly string[] = [
  '\r\n\r\n',
  '\n\r\n',
  '\r\n\r\n\r\n\r\n',
  'x\r\n\r\n',
  ': x\r\n\r\n',
  'x: y\r\n\r\n',
  '0\r\n\r\n',
  '1\r\n\r\n',
  '.1\r\n\r\n',
  '1.1\r\n\r\n',
  'HTTP/1.1\r\n\r\n',
  ' HTTP/1.1\r\n\r\n',
  '/ HTTP/1.1\r\n\r\n',
  ' / HTTP/1.1\r\n\r\n',
];

/**
 * Whether an input that is 'incomplete' for us can never be accepted as it stands: no continuation in
 * CONTINUATIONS completes another message or gets a new head accepted, and at least one is refused. The head
 * parser judges a head (and the body decoder a trailer section) once it has ended, so an error llhttp reports
 * at the bad byte may wait for more bytes here; this tells such a deferred error from an input we could
 * still accept.
 */
export function refusedWhateverFollows(input: Buffer, ours: DriveResult): boolean {
  if (ours.outcome !== 'incomplete') return false;
  let refused = false;
  for (const more of CONTINUATIONS) {
    const r = drive(Buffer.concat([input, Buffer.from(more, 'latin1')]));
    if (r.messages.length > ours.messages.length) return false;
    if (ours.pending === undefined && r.pending !== undefined) return false;
    if (r.outcome === 'error') refused = true;
  }
  return refused;
}

/** The fields of a message the comparisons look at (drops offsets and flags). */
export function essentials(m: ParsedMessage): ParsedMessage {
  return {
    method: m.method,
    target: m.target,
    versionMajor: m.versionMajor,
    versionMinor: m.versionMinor,
    headers: m.headers,
    body: m.body,
    trailers: m.trailers,
  };
}
