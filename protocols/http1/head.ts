import { latin1 } from '../../core/index.ts';
import { COLON, CR, equalsLower, FIELD_VALUE, HT, LF, LOWER, SP, TARGET, TCHAR } from './chars.ts';

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

const CRLFCRLF = Buffer.from('\r\n\r\n');
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

/**
 * Parses an HTTP/1.x message head (request line or status line, then header fields) from bytes in place:
 * the result is offsets into the caller's buffer plus the framing facts, and no string is built unless asked.
 * One instance per connection; `parse` is called again with more bytes after `NEED_MORE`, and a search for the
 * end of the head resumes where it stopped, so a head that trickles in byte by byte costs linear time.
 *
 * Everything RFC 9112 makes a MUST for framing is enforced: an error leaves `errorStatus` (400, 414, 431,
 * 501 or 505) and `errorReason` set.
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
  private scanned = 0;
  private lineLength = -1;

  constructor(kind: 'request' | 'response', limits: HeadLimits) {
    this.kind = kind;
    this.limits = limits;
    this.fields = new Int32Array(Math.max(limits.maxHeaders, 1) * 4);
  }

  /** Forgets a partial head (for a parser reused after an error or on a new connection). */
  reset(): void {
    this.scanned = 0;
    this.lineLength = -1;
  }

  /**
   * Parses a head from `buf[start, end)`. Returns its length when complete, `NEED_MORE` when more bytes
   * are needed, or `HEAD_ERROR` with `errorStatus`/`errorReason` set.
   */
  parse(buf: Buffer, start: number, end: number): number {
    const avail = end - start;
    if (this.scanned > 0) {
      // A previous call found no complete head: look for its end only in what is new.
      const from = start + Math.max(0, this.scanned - 3);
      if (buf.subarray(from, end).indexOf(CRLFCRLF) === -1) {
        this.scanned = avail;
        return this.checkPartial(buf, start, end);
      }
    }
    const r = this.parseHead(buf, start, end);
    if (r === NEED_MORE) {
      this.scanned = avail;
      return this.checkPartial(buf, start, end);
    }
    this.scanned = 0;
    this.lineLength = -1;
    return r;
  }

  /** Limits on a head still incomplete: a start line or header section that is already too long fails now. */
  private checkPartial(buf: Buffer, start: number, end: number): number {
    const limits = this.limits;
    if (this.lineLength < 0) {
      let s = start; // leading empty lines do not count toward the start line
      while (s + 1 < end && buf[s] === CR && buf[s + 1] === LF) s += 2;
      const lf = buf.subarray(s, end).indexOf(LF);
      if (lf !== -1) this.lineLength = s - start + lf + 1;
      else if (end - start > limits.maxStartLine + 2) {
        return this.fail(this.kind === 'request' ? 414 : 502, 'start line too long');
      }
    }
    if (this.lineLength >= 0 && end - start - this.lineLength > limits.maxHeaderBytes) {
      return this.fail(431, 'header section too large');
    }
    return NEED_MORE;
  }

  private fail(status: number, reason: string): number {
    this.errorStatus = status;
    this.errorReason = reason;
    this.fieldCount = 0; // nothing of a refused head may be read as fields
    this.targetStart = this.targetEnd = 0;
    this.scanned = 0;
    this.lineLength = -1;
    return HEAD_ERROR;
  }

  private parseHead(buf: Buffer, start: number, end: number): number {
    let i = start;
    // RFC 9112 §2.2: ignore empty lines received before the request line (a CR alone may await its LF).
    while (i < end && buf[i] === CR) {
      if (i + 1 >= end) return NEED_MORE;
      if (buf[i + 1] !== LF)
        return this.fail(this.kind === 'request' ? 400 : 502, 'bare CR before the start line');
      i += 2;
    }
    const lineStart = i;
    i = this.kind === 'request' ? this.requestLine(buf, i, end) : this.statusLine(buf, i, end);
    if (i <= 0) return i;
    if (i - lineStart - 2 > this.limits.maxStartLine) {
      return this.fail(this.kind === 'request' ? 414 : 502, 'start line too long');
    }
    this.lineLength = i - start;
    i = this.fieldLines(buf, i, end);
    if (i <= 0) return i;
    this.headLength = i - start;
    return this.kind === 'request' ? this.checkRequest(buf) : this.checkResponse();
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
    if (end - i < 10) return this.versionPrefixOk(buf, i, end) ? NEED_MORE : this.badVersion();
    const v = this.version(buf, i);
    if (v !== 0) return v;
    i += 8;
    if (buf[i] !== CR || buf[i + 1] !== LF) return this.fail(400, 'expected CRLF after the HTTP version');
    if (this.major !== 1 || this.minor > 1) return this.fail(505, 'HTTP version not supported');
    return i + 2;
  }

  private statusLine(buf: Buffer, i: number, end: number): number {
    if (end - i < 12) return this.versionPrefixOk(buf, i, end) ? NEED_MORE : this.badVersion();
    const v = this.version(buf, i);
    if (v !== 0) return v;
    i += 8;
    if (buf[i] !== SP) return this.fail(502, 'expected SP after the HTTP version');
    const d0 = buf[i + 1]! - 0x30;
    const d1 = buf[i + 2]! - 0x30;
    const d2 = buf[i + 3]! - 0x30;
    if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9)
      return this.fail(502, 'invalid status code');
    this.status = d0 * 100 + d1 * 10 + d2;
    i += 4;
    if (buf[i] === SP) {
      i++;
      this.reasonStart = i;
      while (i < end && FIELD_VALUE[buf[i]!] === 1) i++;
      if (i >= end) return NEED_MORE;
      this.reasonEnd = i;
    } else {
      this.reasonStart = this.reasonEnd = i;
    }
    if (i + 1 >= end) return NEED_MORE;
    if (buf[i] !== CR || buf[i + 1] !== LF) return this.fail(502, 'expected CRLF after the status line');
    if (this.major !== 1) return this.fail(502, 'unsupported HTTP version');
    return i + 2;
  }

  /** Whether the bytes so far could still begin "HTTP/d.d". */
  private versionPrefixOk(buf: Buffer, i: number, end: number): boolean {
    const want = 'HTTP/';
    for (let k = 0; k < 5 && i + k < end; k++) if (buf[i + k] !== want.charCodeAt(k)) return false;
    return true;
  }

  private badVersion(): number {
    return this.fail(this.kind === 'request' ? 400 : 502, 'invalid HTTP version');
  }

  /** Checks "HTTP/d.d" at i; returns 0 when fine. */
  private version(buf: Buffer, i: number): number {
    if (
      buf[i] !== 0x48 ||
      buf[i + 1] !== 0x54 ||
      buf[i + 2] !== 0x54 ||
      buf[i + 3] !== 0x50 ||
      buf[i + 4] !== 0x2f ||
      buf[i + 6] !== 0x2e
    ) {
      return this.badVersion();
    }
    const major = buf[i + 5]! - 0x30;
    const minor = buf[i + 7]! - 0x30;
    if (major < 0 || major > 9 || minor < 0 || minor > 9) return this.badVersion();
    this.major = major;
    this.minor = minor;
    return 0;
  }

  private fieldLines(buf: Buffer, i: number, end: number): number {
    const limits = this.limits;
    const fields = this.fields;
    const sectionStart = i;
    let count = 0;
    this.contentLength = -1;
    this.transferEncoding = this.chunked = this.teOther = false;
    this.connectionClose = this.connectionKeepAlive = this.connectionUpgrade = false;
    this.expectContinue = this.expectOther = false;
    this.upgradeField = -1;
    this.hostCount = 0;
    for (;;) {
      if (i >= end) return NEED_MORE;
      const c = buf[i];
      if (c === CR) {
        if (i + 1 >= end) return NEED_MORE;
        if (buf[i + 1] !== LF) return this.fail(400, 'bare CR in the header section');
        this.fieldCount = count;
        return i + 2;
      }
      if (c === SP || c === HT) return this.fail(400, 'obsolete line folding is not accepted');
      const ns = i;
      while (i < end && TCHAR[buf[i]!] === 1) i++;
      if (i >= end) return NEED_MORE;
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
      if (i + 1 >= end) return NEED_MORE;
      if (buf[i] !== CR) {
        return this.fail(
          400,
          buf[i] === LF ? 'bare LF in a header line' : 'invalid character in a header value',
        );
      }
      if (buf[i + 1] !== LF) return this.fail(400, 'bare CR in a header value');
      i += 2;
      if (count >= limits.maxHeaders) return this.fail(431, 'too many header fields');
      if (i - sectionStart > limits.maxHeaderBytes) return this.fail(431, 'header section too large');
      const f = count * 4;
      fields[f] = ns;
      fields[f + 1] = ne;
      fields[f + 2] = vs;
      fields[f + 3] = ve;
      if (this.classify(buf, ns, ne, vs, ve, count, i - 2) < 0) return HEAD_ERROR;
      count++;
    }
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

  /** Index of the first field from `from` named `lower` (lower-case), or -1; `shift` rebases offsets. */
  find(buf: Uint8Array, lower: string, from = 0, shift = 0): number {
    const fields = this.fields;
    const len = lower.length;
    const first = lower.charCodeAt(0);
    for (let k = from; k < this.fieldCount; k++) {
      const ns = fields[k * 4]! + shift;
      if (
        fields[k * 4 + 1]! + shift - ns === len &&
        LOWER[buf[ns]!] === first &&
        equalsLower(buf, ns, ns + len, lower)
      )
        return k;
    }
    return -1;
  }
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
