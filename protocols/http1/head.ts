import { latin1 } from '../../core/index.ts';
import {
  COLON,
  CR,
  equalsIgnoreCase,
  equalsLower,
  FIELD_VALUE,
  HT,
  LF,
  LOWER,
  SP,
  TARGET,
  TCHAR,
} from './chars.ts';

export { latin1 };

/** Limits the head parser enforces, each answered with its own status. */
export interface HeadLimits {
  /** Longest request line (or status line) in bytes; a longer one is refused with 414. */
  maxStartLine: number;
  /** Longest header section in bytes (all field lines with their CRLFs); longer is refused with 431. */
  maxHeaderBytes: number;
  /** Most header fields; more are refused with 431. */
  maxHeaders: number;
  /** Refuse HTTP/1.1 requests without a Host field (RFC 9112 §3.2). A duplicated Host is always refused. */
  requireHost: boolean;
}

/** `parse` results. */
export const NEED_MORE = 0;
export const HEAD_ERROR = -1;

/** "HTTP/" */
const VERSION_PREFIX = [0x48, 0x54, 0x54, 0x50, 0x2f];
const ABSOLUTE_FORM = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
/** authority-form (RFC 9112 §3.2.3): host:port, the host a reg-name, IPv4 or bracketed IPv6. */
const AUTHORITY_FORM = /^([A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\]):\d{1,5}$/;

function methodName(buf: Uint8Array, s: number, e: number): string {
  // The common methods come from constants, so no string is built for them.
  const len = e - s;
  const c = buf[s];
  if (len === 3) {
    if (c === 0x47 && buf[s + 1] === 0x45 && buf[s + 2] === 0x54) return 'GET';
    if (c === 0x50 && buf[s + 1] === 0x55 && buf[s + 2] === 0x54) return 'PUT';
  } else if (len === 4) {
    if (c === 0x50 && buf[s + 1] === 0x4f && buf[s + 2] === 0x53 && buf[s + 3] === 0x54) return 'POST';
    if (c === 0x48 && buf[s + 1] === 0x45 && buf[s + 2] === 0x41 && buf[s + 3] === 0x44) return 'HEAD';
  } else if (len === 6 && c === 0x44 && latin1(buf, s, e) === 'DELETE') {
    return 'DELETE';
  } else if (len === 5 && c === 0x50 && latin1(buf, s, e) === 'PATCH') {
    return 'PATCH';
  } else if (len === 7 && c === 0x4f && latin1(buf, s, e) === 'OPTIONS') {
    return 'OPTIONS';
  }
  return latin1(buf, s, e);
}

/** Where a partial head stands between calls. */
const START = 0; // leading empty lines, then the start line
const FIELDS = 1; // field lines

/** Fields the parser makes room for at first; the array grows up to `maxHeaders` as a head needs it. */
const INITIAL_FIELDS = 24;

/**
 * Parses an HTTP/1.x message head (request line or status line, then header fields) from bytes in place:
 * the result is offsets into the caller's buffer plus the framing facts, and no string is built unless asked.
 * One instance per connection; after `NEED_MORE`, `parse` is called again with the same bytes and more after
 * them (they may have moved: offsets are rebased). Each line is judged as soon as its LF is in, so a bad line
 * is refused at once however the head is split into reads, and a line once judged is never read again: a head
 * that trickles in byte by byte costs linear time.
 *
 * Everything RFC 9112 makes a MUST for framing is enforced: an error leaves `errorStatus` (400, 414, 431,
 * 501 or 505; 502 for responses) and `errorReason` set.
 */
export class HeadParser {
  readonly kind: 'request' | 'response';
  limits: HeadLimits;

  /** Method (requests). Common methods are constant strings. */
  method = '';
  targetStart = 0;
  targetEnd = 0;
  major = 1;
  minor = 1;
  /** Status code (responses). */
  status = 0;
  reasonStart = 0;
  reasonEnd = 0;
  /** Field offsets: [nameStart, nameEnd, valueStart, valueEnd] per field, in the order received. */
  fields: Int32Array;
  fieldCount = 0;
  /** Content-Length, or -1 when absent. */
  contentLength = -1;
  /** Transfer-Encoding was present. */
  transferEncoding = false;
  /** The final transfer coding is chunked. */
  chunked = false;
  connectionClose = false;
  connectionKeepAlive = false;
  connectionUpgrade = false;
  /** Index of the Upgrade field, or -1. */
  upgradeField = -1;
  /** `Expect: 100-continue` was sent. */
  expectContinue = false;
  /** An Expect other than 100-continue was sent (answered with 417 by the server). */
  expectOther = false;
  /** Bytes of the whole head, CRLFCRLF included. */
  headLength = 0;

  errorStatus = 0;
  errorReason = '';

  private hostCount = 0;
  private teOther = false;
  // A partial head: what is judged so far, as offsets from the head's first byte.
  private phase = START;
  /** Where the next line to judge begins. */
  private resumeAt = 0;
  /** How far the line at `resumeAt` was searched for its LF. */
  private scannedTo = 0;
  /** Where the field section begins (once the start line is judged). */
  private sectionAt = 0;
  /** The absolute offset of the head's first byte in the last call, to rebase offsets on the next. */
  private base = 0;

  constructor(kind: 'request' | 'response', limits: HeadLimits) {
    this.kind = kind;
    this.limits = limits;
    this.fields = new Int32Array(Math.max(Math.min(limits.maxHeaders, INITIAL_FIELDS), 1) * 4);
  }

  /** Forgets a partial head (for a parser reused after an error or on a new connection). */
  reset(): void {
    this.phase = START;
    this.resumeAt = this.scannedTo = 0;
  }

  /**
   * Parses a head from `buf[start, end)`. Returns its length when complete, `NEED_MORE` when more bytes
   * are needed, or `HEAD_ERROR` with `errorStatus`/`errorReason` set.
   */
  parse(buf: Buffer, start: number, end: number): number {
    if (this.resumeAt === 0 && this.scannedTo === 0 && this.phase === START) {
      this.begin();
    } else {
      if (start !== this.base) {
        this.rebase(start - this.base);
        this.base = start;
      }
      // The line being waited for is judged again only once a CR or LF is among the new bytes (or the
      // last one was a CR awaiting its LF): until then nothing in it can end it or break it.
      const from = start + this.scannedTo;
      if (from < end && buf[from - 1] !== CR && !hasLineEnd(buf, from, end)) {
        this.scannedTo = end - start;
        return this.partial(start, end);
      }
    }
    this.base = start;
    return this.run(buf, start, end);
  }

  /**
   * After `NEED_MORE` for `buf[start, end)`: whether those bytes are empty lines only (with a CR that may
   * await its LF), as a client sends after a body: the connection is idle, not sending a head.
   */
  onlyEmptyLines(buf: Buffer, start: number, end: number): boolean {
    if (this.phase !== START) return false;
    const at = start + this.resumeAt;
    return at === end || (at === end - 1 && buf[at] === CR);
  }

  /** Fresh head: framing facts cleared. */
  private begin(): void {
    this.fieldCount = 0;
    this.contentLength = -1;
    this.transferEncoding = this.chunked = this.teOther = false;
    this.connectionClose = this.connectionKeepAlive = this.connectionUpgrade = false;
    this.expectContinue = this.expectOther = false;
    this.upgradeField = -1;
    this.hostCount = 0;
  }

  /** The bytes of a partial head moved by `delta` in the caller's buffer. */
  private rebase(delta: number): void {
    const f = this.fields;
    for (let k = 0, n = this.fieldCount * 4; k < n; k++) f[k]! += delta;
    this.targetStart += delta;
    this.targetEnd += delta;
    this.reasonStart += delta;
    this.reasonEnd += delta;
  }

  /** Judges every complete line from `resumeAt` on; stops at the end of the head or of the bytes. */
  private run(buf: Buffer, start: number, end: number): number {
    let i = start + this.resumeAt;
    if (this.phase === START) {
      // RFC 9112 §2.2: ignore empty lines received before the request line (a CR alone may await its LF).
      while (i < end && buf[i] === CR) {
        if (i + 1 >= end) return this.wait(start, i, end);
        if (buf[i + 1] !== LF)
          return this.fail(this.kind === 'request' ? 400 : 502, 'bare CR before the start line');
        i += 2;
      }
      const lineStart = i;
      const r = this.kind === 'request' ? this.requestLine(buf, i, end) : this.statusLine(buf, i, end);
      if (r === NEED_MORE) return this.wait(start, lineStart, end);
      if (r < 0) return r;
      // Empty lines before the start line count toward its limit: they are bytes a client makes us hold.
      if (r - start - 2 > this.limits.maxStartLine) {
        return this.fail(this.kind === 'request' ? 414 : 502, 'start line too long');
      }
      this.phase = FIELDS;
      this.sectionAt = r - start;
      this.fieldCount = 0;
      i = r;
    }
    const r = this.fieldLines(buf, start, i, end);
    if (r <= 0) return r;
    this.headLength = r - start;
    this.reset();
    return this.kind === 'request' ? this.checkRequest(buf) : this.checkResponse();
  }

  /** The line at `lineStart` is not complete: remember it, and check the limits a partial head can break. */
  private wait(start: number, lineStart: number, end: number): number {
    this.resumeAt = lineStart - start;
    this.scannedTo = end - start;
    return this.partial(start, end);
  }

  /**
   * Limits on a head still incomplete, refused as soon as no completion could be within them: the start line
   * (with any empty lines before it) may grow to `maxStartLine` plus its CRLF, the field lines to
   * `maxHeaderBytes` plus the empty line that ends them (a CR of which may already be here).
   */
  private partial(start: number, end: number): number {
    const limits = this.limits;
    if (this.phase === START) {
      if (end - start > limits.maxStartLine + 1) {
        return this.fail(this.kind === 'request' ? 414 : 502, 'start line too long');
      }
    } else if (end - start - this.sectionAt > limits.maxHeaderBytes + 1) {
      return this.fail(431, 'header section too large');
    }
    return NEED_MORE;
  }

  private fail(status: number, reason: string): number {
    this.errorStatus = status;
    this.errorReason = reason;
    this.fieldCount = 0; // nothing of a refused head may be read as fields
    this.targetStart = this.targetEnd = 0;
    this.reset();
    return HEAD_ERROR;
  }

  private requestLine(buf: Buffer, i: number, end: number): number {
    const ms = i;
    while (i < end && TCHAR[buf[i]!] === 1) i++;
    if (i >= end) return NEED_MORE;
    if (buf[i] !== SP || i === ms) return this.fail(400, 'invalid method');
    this.method = methodName(buf, ms, i);
    i++;
    const ts = i;
    while (i < end && TARGET[buf[i]!] === 1) i++;
    if (i >= end) return NEED_MORE;
    if (buf[i] !== SP || i === ts) return this.fail(400, 'invalid request target');
    this.targetStart = ts;
    this.targetEnd = i;
    i++;
    const v = this.version(buf, i, end);
    if (v !== 0) return v;
    i += 8;
    if (i >= end) return NEED_MORE;
    if (buf[i] !== CR) return this.fail(400, 'expected CRLF after the HTTP version');
    if (i + 1 >= end) return NEED_MORE;
    if (buf[i + 1] !== LF) return this.fail(400, 'expected CRLF after the HTTP version');
    if (this.major !== 1 || this.minor > 1) return this.fail(505, 'HTTP version not supported');
    return i + 2;
  }

  private statusLine(buf: Buffer, i: number, end: number): number {
    const v = this.version(buf, i, end);
    if (v !== 0) return v;
    i += 8;
    if (end - i < 4) {
      // As much of " ddd" as has arrived must already be right.
      if (i < end && buf[i] !== SP) return this.fail(502, 'expected SP after the HTTP version');
      for (let k = i + 1; k < end; k++) {
        const d = buf[k]! - 0x30;
        if (d < 0 || d > 9 || (k === i + 1 && (d < 1 || d > 5))) return this.fail(502, 'invalid status code');
      }
      return NEED_MORE;
    }
    if (buf[i] !== SP) return this.fail(502, 'expected SP after the HTTP version');
    const d0 = buf[i + 1]! - 0x30;
    const d1 = buf[i + 2]! - 0x30;
    const d2 = buf[i + 3]! - 0x30;
    if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9)
      return this.fail(502, 'invalid status code');
    this.status = d0 * 100 + d1 * 10 + d2;
    i += 4;
    if (i < end && buf[i] === SP) {
      i++;
      this.reasonStart = i;
      while (i < end && FIELD_VALUE[buf[i]!] === 1) i++;
      if (i >= end) return NEED_MORE;
      this.reasonEnd = i;
    } else {
      this.reasonStart = this.reasonEnd = i;
    }
    if (i >= end) return NEED_MORE;
    if (buf[i] !== CR) return this.fail(502, 'expected CRLF after the status line');
    if (i + 1 >= end) return NEED_MORE;
    if (buf[i + 1] !== LF) return this.fail(502, 'expected CRLF after the status line');
    if (this.major !== 1) return this.fail(502, 'unsupported HTTP version');
    return i + 2;
  }

  private badVersion(): number {
    return this.fail(this.kind === 'request' ? 400 : 502, 'invalid HTTP version');
  }

  /**
   * Checks "HTTP/d.d" at i; returns 0 when all 8 bytes are in and right, NEED_MORE when the bytes so far
   * are right but fewer than 8, or an error at the first wrong byte.
   */
  private version(buf: Buffer, i: number, end: number): number {
    const n = Math.min(end - i, 8);
    for (let k = 0; k < n; k++) {
      const b = buf[i + k]!;
      const ok = k < 5 ? b === VERSION_PREFIX[k] : k === 6 ? b === 0x2e : b >= 0x30 && b <= 0x39;
      if (!ok) return this.badVersion();
    }
    if (n < 8) return NEED_MORE;
    this.major = buf[i + 5]! - 0x30;
    this.minor = buf[i + 7]! - 0x30;
    return 0;
  }

  /**
   * Judges field lines from `i`; returns the offset after the empty line that ends the head, NEED_MORE at
   * an incomplete line (remembered, see `wait`), or HEAD_ERROR.
   */
  private fieldLines(buf: Buffer, start: number, i: number, end: number): number {
    const limits = this.limits;
    const sectionStart = start + this.sectionAt;
    let count = this.fieldCount;
    for (;;) {
      const lineStart = i;
      if (i >= end) return this.waitFields(start, lineStart, end, count);
      const c = buf[i];
      if (c === CR) {
        if (i + 1 >= end) return this.waitFields(start, lineStart, end, count);
        if (buf[i + 1] !== LF) return this.fail(400, 'bare CR in the header section');
        this.fieldCount = count;
        return i + 2;
      }
      if (c === LF) return this.fail(400, 'bare LF in the header section');
      if (c === SP || c === HT) return this.fail(400, 'obsolete line folding is not accepted');
      const ns = i;
      while (i < end && TCHAR[buf[i]!] === 1) i++;
      if (i >= end) return this.waitFields(start, lineStart, end, count);
      if (buf[i] !== COLON) {
        const ws = buf[i] === SP || buf[i] === HT;
        return this.fail(
          400,
          ws ? 'whitespace between header name and colon' : 'invalid character in a header name',
        );
      }
      if (i === ns) return this.fail(400, 'empty header name');
      const ne = i;
      i++;
      while (i < end && (buf[i] === SP || buf[i] === HT)) i++;
      const vs = i;
      while (i < end && FIELD_VALUE[buf[i]!] === 1) i++;
      // Trailing whitespace is not part of the value.
      let ve = i;
      while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HT)) ve--;
      if (i >= end) return this.waitFields(start, lineStart, end, count);
      if (buf[i] !== CR) {
        return this.fail(
          400,
          buf[i] === LF ? 'bare LF in a header line' : 'invalid character in a header value',
        );
      }
      if (i + 1 >= end) return this.waitFields(start, lineStart, end, count);
      if (buf[i + 1] !== LF) return this.fail(400, 'bare CR in a header value');
      i += 2;
      if (count >= limits.maxHeaders) return this.fail(431, 'too many header fields');
      if (i - sectionStart > limits.maxHeaderBytes) return this.fail(431, 'header section too large');
      const f = count * 4;
      if (f + 4 > this.fields.length) this.growFields();
      const fields = this.fields;
      fields[f] = ns;
      fields[f + 1] = ne;
      fields[f + 2] = vs;
      fields[f + 3] = ve;
      if (this.classify(buf, ns, ne, vs, ve, count, i - 2) < 0) return HEAD_ERROR;
      count++;
    }
  }

  private waitFields(start: number, lineStart: number, end: number, count: number): number {
    this.fieldCount = count;
    return this.wait(start, lineStart, end);
  }

  /** Doubles the field array, up to `maxHeaders` fields. */
  private growFields(): void {
    const cap = Math.min(this.fields.length * 2, Math.max(this.limits.maxHeaders, 1) * 4);
    const grown = new Int32Array(cap);
    grown.set(this.fields);
    this.fields = grown;
  }

  /** Notes the framing-relevant fields; returns -1 after `fail` on a violation. */
  private classify(
    buf: Buffer,
    ns: number,
    ne: number,
    vs: number,
    ve: number,
    index: number,
    rawEnd: number,
  ): number {
    const len = ne - ns;
    const first = LOWER[buf[ns]!];
    switch (len) {
      case 4:
        if (first === 0x68 && equalsLower(buf, ns, ne, 'host')) this.hostCount++;
        break;
      case 6:
        if (first === 0x65 && equalsLower(buf, ns, ne, 'expect')) {
          if (equalsLower(buf, vs, ve, '100-continue')) this.expectContinue = true;
          else this.expectOther = true;
        }
        break;
      case 7:
        if (first === 0x75 && equalsLower(buf, ns, ne, 'upgrade') && ve > vs) this.upgradeField = index;
        break;
      case 10:
        if (first === 0x63 && equalsLower(buf, ns, ne, 'connection')) this.connectionTokens(buf, vs, ve);
        break;
      case 14:
        if (first === 0x63 && equalsLower(buf, ns, ne, 'content-length'))
          return this.contentLengthField(buf, vs, ve);
        break;
      case 17:
        if (first === 0x74 && equalsLower(buf, ns, ne, 'transfer-encoding'))
          return this.transferCodings(buf, vs, ve, rawEnd);
        break;
    }
    return 0;
  }

  private contentLengthField(buf: Buffer, vs: number, ve: number): number {
    if (this.contentLength !== -1) return this.fail(400, 'more than one Content-Length');
    if (vs === ve) return this.fail(400, 'empty Content-Length');
    let n = 0;
    let significant = 0;
    for (let i = vs; i < ve; i++) {
      const d = buf[i]! - 0x30;
      if (d < 0 || d > 9) return this.fail(400, 'Content-Length is not a number');
      n = n * 10 + d;
      if (n > 0) significant++;
    }
    if (significant > 15) return this.fail(413, 'Content-Length too large');
    this.contentLength = n;
    return 0;
  }

  /**
   * Transfer-Encoding: a comma list of codings; chunked may appear once and must be the last. Stricter than
   * the list syntax allows, as llhttp is (disagreeing parsers are how requests get smuggled): no empty field,
   * no empty element, no HTAB.
   */
  private transferCodings(buf: Buffer, vs: number, ve: number, rawEnd: number): number {
    this.transferEncoding = true;
    if (vs === ve) return this.fail(400, 'empty Transfer-Encoding');
    if (buf[ve - 1] === 0x2c) return this.fail(400, 'empty element in Transfer-Encoding');
    for (let k = ve; k < rawEnd; k++) if (buf[k] === HT) return this.fail(400, 'invalid Transfer-Encoding');
    let i = vs;
    while (i < ve) {
      while (i < ve && buf[i] === SP) i++;
      const ts = i;
      while (i < ve && buf[i] !== 0x2c) {
        if (buf[i] === HT) return this.fail(400, 'invalid Transfer-Encoding');
        i++;
      }
      let te = i;
      while (te > ts && buf[te - 1] === SP) te--;
      if (te === ts) return this.fail(400, 'empty element in Transfer-Encoding');
      if (i < ve) i++; // the comma
      if (equalsLower(buf, ts, te, 'chunked')) {
        if (this.chunked) return this.fail(400, 'chunked applied more than once');
        this.chunked = true;
      } else {
        if (this.chunked && this.kind === 'request')
          return this.fail(400, 'chunked is not the final transfer coding');
        this.chunked = false;
        this.teOther = true;
      }
    }
    return 0;
  }

  /** Connection options: comma-separated elements, each compared whole (after OWS) with the known ones. */
  private connectionTokens(buf: Buffer, vs: number, ve: number): void {
    let i = vs;
    while (i < ve) {
      while (i < ve && (buf[i] === SP || buf[i] === HT)) i++;
      const ts = i;
      while (i < ve && buf[i] !== 0x2c) i++;
      let te = i;
      while (te > ts && (buf[te - 1] === SP || buf[te - 1] === HT)) te--;
      const len = te - ts;
      if (len === 5 && equalsLower(buf, ts, te, 'close')) this.connectionClose = true;
      else if (len === 10 && equalsLower(buf, ts, te, 'keep-alive')) this.connectionKeepAlive = true;
      else if (len === 7 && equalsLower(buf, ts, te, 'upgrade')) this.connectionUpgrade = true;
      i++;
    }
  }

  private checkRequest(buf: Buffer): number {
    if (this.transferEncoding) {
      if (this.minor === 0) return this.fail(400, 'Transfer-Encoding in an HTTP/1.0 request');
      if (this.contentLength !== -1) return this.fail(400, 'both Content-Length and Transfer-Encoding');
      if (!this.chunked) return this.fail(400, 'chunked is not the final transfer coding');
      if (this.teOther) return this.fail(501, 'unsupported transfer coding');
    }
    if (this.hostCount > 1) return this.fail(400, 'more than one Host');
    if (this.hostCount === 0 && this.minor === 1 && this.limits.requireHost)
      return this.fail(400, 'missing Host');
    // Request-target forms (RFC 9112 §3.2): origin, absolute, authority (CONNECT), asterisk (OPTIONS).
    const t0 = buf[this.targetStart];
    if (t0 !== 0x2f) {
      if (t0 === 0x2a && this.targetEnd - this.targetStart === 1) {
        if (this.method !== 'OPTIONS') return this.fail(400, 'asterisk-form is only for OPTIONS');
      } else if (this.method === 'CONNECT') {
        if (!AUTHORITY_FORM.test(latin1(buf, this.targetStart, this.targetEnd))) {
          return this.fail(400, 'invalid CONNECT target');
        }
      } else if (!ABSOLUTE_FORM.test(latin1(buf, this.targetStart, this.targetEnd))) {
        return this.fail(400, 'invalid request target');
      }
    } else if (this.method === 'CONNECT') {
      return this.fail(400, 'invalid CONNECT target');
    }
    return this.headLength;
  }

  private checkResponse(): number {
    // RFC 9112 §6.3: both framings at once is how responses get split; a proxy must not pick one and go on.
    if (this.transferEncoding && this.contentLength !== -1) {
      return this.fail(502, 'both Content-Length and Transfer-Encoding in a response');
    }
    // A coding other than chunked cannot be passed on as it came (bodies are framed again), and decoding it
    // is not a proxy's job: refused, as nginx does ("upstream sent unknown Transfer-Encoding").
    if (this.teOther) return this.fail(502, 'a transfer coding other than chunked in a response');
    return this.headLength;
  }

  /** Whether field `k`'s name is `lower` (lower-case ASCII), compared in place. */
  nameIs(buf: Uint8Array, k: number, lower: string, shift = 0): boolean {
    const ns = this.fields[k * 4]! + shift;
    return equalsLower(buf, ns, this.fields[k * 4 + 1]! + shift, lower);
  }

  /** Length of field `k`'s name. */
  nameLength(k: number): number {
    return this.fields[k * 4 + 1]! - this.fields[k * 4]!;
  }

  /** Bytes `copyField` writes for field `k`. */
  fieldSize(k: number): number {
    const f = this.fields;
    return f[k * 4 + 1]! - f[k * 4]! + f[k * 4 + 3]! - f[k * 4 + 2]! + 4;
  }

  /** Copies field `k` as `name: value\r\n` from `buf` into `out` at `p`; returns the end. */
  copyField(buf: Buffer, k: number, out: Buffer, p: number, shift = 0): number {
    const f = this.fields;
    p = copyBytes(buf, f[k * 4]! + shift, f[k * 4 + 1]! + shift, out, p);
    out[p++] = 0x3a;
    out[p++] = 0x20;
    p = copyBytes(buf, f[k * 4 + 2]! + shift, f[k * 4 + 3]! + shift, out, p);
    out[p++] = 0x0d;
    out[p++] = 0x0a;
    return p;
  }

  /** Field `k`'s name as sent (latin1). */
  name(buf: Uint8Array, k: number): string {
    return latin1(buf, this.fields[k * 4]!, this.fields[k * 4 + 1]!);
  }

  /** Field `k`'s value, surrounding whitespace trimmed (latin1). */
  value(buf: Uint8Array, k: number): string {
    return latin1(buf, this.fields[k * 4 + 2]!, this.fields[k * 4 + 3]!);
  }

  /**
   * Index of the first field from `from` named `name` (ASCII case-insensitive, compared in place: neither
   * side is lower-cased into a new string), or -1; `shift` rebases offsets.
   */
  find(buf: Uint8Array, name: string, from = 0, shift = 0): number {
    const fields = this.fields;
    const len = name.length;
    if (len === 0) return -1;
    const first = name.charCodeAt(0);
    if (first > 0x7f) return -1;
    const lowFirst = LOWER[first];
    for (let k = from; k < this.fieldCount; k++) {
      const ns = fields[k * 4]! + shift;
      if (
        fields[k * 4 + 1]! + shift - ns === len &&
        LOWER[buf[ns]!] === lowFirst &&
        equalsIgnoreCase(buf, ns, name)
      )
        return k;
    }
    return -1;
  }
}

/** Whether `buf[from, end)` holds a CR or an LF. */
function hasLineEnd(buf: Buffer, from: number, end: number): boolean {
  const view = buf.subarray(from, end);
  return view.indexOf(LF) !== -1 || view.indexOf(CR) !== -1;
}

/**
 * Copies `src[start, end)` to `out` at `p`; returns the end. Header names and values are short, and for them
 * a byte loop beats `Buffer#copy`, which makes a view (and reads `.buffer`) on every call.
 */
function copyBytes(src: Uint8Array, start: number, end: number, out: Uint8Array, p: number): number {
  if (end - start > 64) {
    out.set(src.subarray(start, end), p);
    return p + end - start;
  }
  for (let i = start; i < end; i++) out[p++] = src[i]!;
  return p;
}
