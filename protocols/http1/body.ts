import { COLON, CR, equalsLower, FIELD_VALUE, HEX, HT, LF, QDTEXT, SP, TCHAR } from './chars.ts';
import { latin1 } from './head.ts';

/** Receives decoded body bytes in place: `buf[start, end)` is valid only during the call. */
export interface BodySink {
  onBody(buf: Buffer, start: number, end: number): void;
}

/** How a message body is delimited. */
export const BODY_NONE = 0;
export const BODY_LENGTH = 1;
export const BODY_CHUNKED = 2;
export const BODY_UNTIL_CLOSE = 3;

/** Limits of the body decoder. */
export interface BodyLimits {
  /** Largest body in bytes; a chunked body growing past it fails with 413. */
  maxBodySize: number;
  /** Longest chunk-size line (size plus extensions) in bytes. */
  maxChunkLine: number;
  /** Longest trailer section in bytes. */
  maxTrailerBytes: number;
  /** Most trailer fields. */
  maxTrailers: number;
}

// Chunked states.
const SIZE = 0;
const SIZE_LF = 1;
const EXT_NAME_START = 2;
const EXT_NAME = 3;
const EXT_VALUE_START = 4;
const EXT_TOKEN = 5;
const EXT_QUOTED = 6;
const EXT_QUOTED_PAIR = 7;
const EXT_AFTER_QUOTED = 8;
const DATA = 9;
const DATA_CR = 10;
const DATA_LF = 11;
const TRAILERS = 12;

const MAX_SAFE_CHUNK = 2 ** 48;
const CRLFCRLF = Buffer.from('\r\n\r\n');
const NO_SINK: BodySink = { onBody() {} };

/**
 * Decodes a message body framed by Content-Length, chunked transfer coding (RFC 9112 §7.1) or the end of
 * the connection, in place and incrementally: `decode` hands body bytes to a sink as offsets into the
 * caller's buffer and returns how many bytes it consumed. Strict: chunk sizes are hex digits only (no sign,
 * prefix or whitespace), extensions must be `;name[=token|"quoted"]`, every chunk ends in CRLF, and
 * trailers follow the same field rules as headers. A violation sets `errorStatus` and returns -1.
 */
export class BodyDecoder {
  limits: BodyLimits;
  mode = BODY_NONE;
  /** The body is complete. */
  done = true;
  /** Body bytes delivered so far. */
  received = 0;
  /** Trailer fields of a chunked body, once complete ([name, value] as sent). */
  trailers: [string, string][] = [];
  errorStatus = 0;
  errorReason = '';

  private remaining = 0;
  private state = SIZE;
  private size = 0;
  private lineBytes = 0;
  private scanned = 0;

  constructor(limits: BodyLimits) {
    this.limits = limits;
  }

  /** Starts a body of the given framing; `length` is the Content-Length for `BODY_LENGTH`. */
  begin(mode: number, length = 0): void {
    this.mode = mode;
    this.received = 0;
    this.errorStatus = 0;
    if (this.trailers.length !== 0) this.trailers = [];
    this.state = SIZE;
    this.size = 0;
    this.lineBytes = 0;
    this.scanned = 0;
    // For chunked bodies `remaining` doubles as "a size digit was seen": it must start at 0, whatever the
    // caller passes (an empty first size line read as the last chunk would be request smuggling).
    this.remaining = mode === BODY_LENGTH ? length : 0;
    this.done = mode === BODY_NONE || (mode === BODY_LENGTH && length === 0);
  }

  /** The connection ended: completes a body delimited by close; false if the body was cut short. */
  finish(): boolean {
    if (this.mode === BODY_UNTIL_CLOSE) this.done = true;
    return this.done;
  }

  /**
   * Whether decoding `buf[start, end)` would end the body, complete or in a framing error, without
   * consuming anything (a body deadline asks whether the client already sent all of it).
   */
  wouldEnd(buf: Buffer, start: number, end: number): boolean {
    if (this.done) return true;
    if (this.mode !== BODY_CHUNKED) return this.mode === BODY_LENGTH && end - start >= this.remaining;
    const { remaining, state, size, lineBytes, scanned, received, trailers } = this;
    const count = trailers.length;
    const n = this.chunked(buf, start, end, NO_SINK);
    const ended = n < 0 || this.done;
    this.remaining = remaining;
    this.state = state;
    this.size = size;
    this.lineBytes = lineBytes;
    this.scanned = scanned;
    this.received = received;
    this.done = false;
    this.errorStatus = 0;
    this.errorReason = '';
    trailers.length = count;
    return ended;
  }

  private fail(status: number, reason: string): number {
    this.errorStatus = status;
    this.errorReason = reason;
    return -1;
  }

  /** Decodes from `buf[start, end)`; returns bytes consumed, or -1 on a framing error. */
  decode(buf: Buffer, start: number, end: number, sink: BodySink): number {
    if (this.done) return 0;
    const mode = this.mode;
    if (mode === BODY_LENGTH) {
      const n = Math.min(this.remaining, end - start);
      if (n > 0) {
        this.remaining -= n;
        this.received += n;
        if (this.remaining === 0) this.done = true;
        sink.onBody(buf, start, start + n);
      }
      return n;
    }
    if (mode === BODY_UNTIL_CLOSE) {
      if (end > start) {
        this.received += end - start;
        sink.onBody(buf, start, end);
      }
      return end - start;
    }
    return this.chunked(buf, start, end, sink);
  }

  private chunked(buf: Buffer, start: number, end: number, sink: BodySink): number {
    let i = start;
    const limits = this.limits;
    while (i < end) {
      const state = this.state;
      if (state === DATA) {
        const n = Math.min(this.remaining, end - i);
        this.remaining -= n;
        this.received += n;
        const from = i;
        i += n;
        if (this.remaining === 0) this.state = DATA_CR;
        sink.onBody(buf, from, i);
        continue;
      }
      if (state === TRAILERS) return this.trailerSection(buf, start, i, end);
      const b = buf[i]!;
      i++;
      if (state !== DATA_CR && state !== DATA_LF && ++this.lineBytes > limits.maxChunkLine) {
        return this.fail(400, 'chunk size line too long');
      }
      switch (state) {
        case SIZE: {
          const h = HEX[b]!;
          if (h >= 0) {
            if (this.size >= MAX_SAFE_CHUNK) return this.fail(400, 'chunk size too large');
            this.size = this.size * 16 + h;
            this.remaining = 1; // marks "at least one digit seen"
          } else if (this.remaining === 0) {
            return this.fail(400, 'invalid chunk size');
          } else if (b === CR) {
            this.state = SIZE_LF;
          } else if (b === 0x3b) {
            this.state = EXT_NAME_START;
          } else {
            return this.fail(400, 'invalid character after chunk size');
          }
          break;
        }
        case SIZE_LF: {
          if (b !== LF) return this.fail(400, 'expected LF after chunk size');
          const size = this.size;
          this.size = 0;
          this.lineBytes = 0;
          if (size === 0) {
            this.state = TRAILERS;
            this.scanned = 0;
            break;
          }
          if (this.received + size > limits.maxBodySize) return this.fail(413, 'body too large');
          this.remaining = size;
          this.state = DATA;
          break;
        }
        case EXT_NAME_START:
          if (TCHAR[b] !== 1) return this.fail(400, 'invalid chunk extension name');
          this.state = EXT_NAME;
          break;
        case EXT_NAME:
          if (TCHAR[b] === 1) break;
          if (b === 0x3d) this.state = EXT_VALUE_START;
          else if (b === 0x3b) this.state = EXT_NAME_START;
          else if (b === CR) this.state = SIZE_LF;
          else return this.fail(400, 'invalid chunk extension');
          break;
        case EXT_VALUE_START:
          if (b === 0x22) this.state = EXT_QUOTED;
          else if (TCHAR[b] === 1) this.state = EXT_TOKEN;
          else return this.fail(400, 'invalid chunk extension value');
          break;
        case EXT_TOKEN:
          if (TCHAR[b] === 1) break;
          if (b === 0x3b) this.state = EXT_NAME_START;
          else if (b === CR) this.state = SIZE_LF;
          else return this.fail(400, 'invalid chunk extension value');
          break;
        case EXT_QUOTED:
          if (b === 0x22) this.state = EXT_AFTER_QUOTED;
          else if (b === 0x5c) this.state = EXT_QUOTED_PAIR;
          else if (QDTEXT[b] !== 1) return this.fail(400, 'invalid character in a quoted chunk extension');
          break;
        case EXT_QUOTED_PAIR:
          if (b !== HT && (b < 0x20 || b === 0x7f))
            return this.fail(400, 'invalid quoted-pair in a chunk extension');
          this.state = EXT_QUOTED;
          break;
        case EXT_AFTER_QUOTED:
          if (b === 0x3b) this.state = EXT_NAME_START;
          else if (b === CR) this.state = SIZE_LF;
          else return this.fail(400, 'invalid chunk extension');
          break;
        case DATA_CR:
          if (b !== CR) return this.fail(400, 'chunk data longer than its size');
          this.state = DATA_LF;
          break;
        case DATA_LF:
          if (b !== LF) return this.fail(400, 'expected CRLF after chunk data');
          this.state = SIZE;
          this.remaining = 0;
          break;
      }
    }
    return i - start;
  }

  /** The trailer section after the last chunk: waits for it whole, then parses its fields. */
  private trailerSection(buf: Buffer, start: number, i: number, end: number): number {
    const limits = this.limits;
    if (buf[i] === CR) {
      // No trailers: the section is the empty line alone.
      if (end - i < 2) return i - start;
      if (buf[i + 1] !== LF) return this.fail(400, 'bare CR after the last chunk');
      this.done = true;
      return i + 2 - start;
    }
    const from = i + Math.max(0, this.scanned - 3);
    const at = buf.subarray(from, end).indexOf(CRLFCRLF);
    if (at === -1) {
      this.scanned = end - i;
      if (end - i > limits.maxTrailerBytes) return this.fail(431, 'trailer section too large');
      return i - start;
    }
    const sectionEnd = from + at + 4;
    if (sectionEnd - i > limits.maxTrailerBytes) return this.fail(431, 'trailer section too large');
    let p = i;
    while (p < sectionEnd - 2) {
      const ns = p;
      while (TCHAR[buf[p]!] === 1) p++;
      if (p === ns) {
        return this.fail(
          400,
          buf[p] === SP || buf[p] === HT ? 'obsolete line folding in trailers' : 'invalid trailer name',
        );
      }
      if (buf[p] !== COLON) return this.fail(400, 'invalid trailer name');
      const ne = p;
      p++;
      while (buf[p] === SP || buf[p] === HT) p++;
      const vs = p;
      let ve = p;
      while (FIELD_VALUE[buf[p]!] === 1) {
        if (buf[p] !== SP && buf[p] !== HT) ve = p + 1;
        p++;
      }
      if (buf[p] !== CR || buf[p + 1] !== LF) return this.fail(400, 'invalid character in a trailer value');
      p += 2;
      // RFC 9110 §6.5.1: framing and routing fields must not come as trailers.
      if (
        equalsLower(buf, ns, ne, 'content-length') ||
        equalsLower(buf, ns, ne, 'transfer-encoding') ||
        equalsLower(buf, ns, ne, 'host')
      ) {
        return this.fail(400, 'framing field in trailers');
      }
      if (this.trailers.length >= limits.maxTrailers) return this.fail(431, 'too many trailer fields');
      this.trailers.push([latin1(buf, ns, ne), latin1(buf, vs, ve)]);
    }
    this.done = true;
    return sectionEnd - start;
  }
}
