import { type Conn, type EventHandler, writeLatin1 } from '../../core/index.ts';
import type { HeaderValue, RawHeaders, Response } from './api.ts';
import { TCHAR } from './chars.ts';
import { HttpError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import { serializerFor } from './json-schema.ts';
import { closedError, staleError } from './request.ts';
import { statusAndDate, statusLineBytes } from './status.ts';

const EMPTY = Buffer.alloc(0);

/** Copies header name `s` to `buf[p]`, checking it is a token; returns the end offset, or -1 if invalid. */
function putName(buf: Buffer, p: number, s: string): number {
  const len = s.length;
  if (len === 0) return -1;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f || TCHAR[c] !== 1) return -1;
    buf[p + i] = c;
  }
  return p + len;
}

/** Whether a header value byte is allowed: HTAB, SP, visible ASCII or obs-text (no CR, LF, NUL, DEL). */
function valueChar(c: number): boolean {
  return c <= 0xff && (c >= 0x20 || c === 0x09) && c !== 0x7f;
}

/** Copies header value `s` to `buf[p]`, checking every character; returns the end offset, or -1 if invalid. */
function putValue(buf: Buffer, p: number, s: string): number {
  const len = s.length;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (!valueChar(c)) return -1;
    buf[p + i] = c;
  }
  return p + len;
}

/** Whether `s` is a header name (a non-empty token), checked whole, however long. */
function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f || TCHAR[c] !== 1) return false;
  }
  return true;
}

/** Whether every character of `s` may stand in a header value, checked whole, however long. */
function isFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (!valueChar(s.charCodeAt(i))) return false;
  return true;
}

function putDecimal(buf: Buffer, p: number, n: number): number {
  let digits = 1;
  for (let m = n; m >= 10; m = Math.floor(m / 10)) digits++;
  for (let i = p + digits - 1; i >= p; i--) {
    buf[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  return p + digits;
}

const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/** Writes `n` in lower-case hex at `p` (a chunk size); returns the end. */
function putHex(buf: Buffer, p: number, n: number): number {
  let digits = 1;
  for (let m = n; m >= 16; m = Math.floor(m / 16)) digits++;
  for (let i = p + digits - 1; i >= p; i--) {
    buf[i] = HEX_DIGITS[n % 16]!;
    n = Math.floor(n / 16);
  }
  return p + digits;
}

/** Copies a small buffer byte by byte: for tens of bytes this beats TypedArray#set's call overhead. */
function putBytes(buf: Buffer, p: number, src: Buffer): number {
  const len = src.length;
  for (let i = 0; i < len; i++) buf[p + i] = src[i]!;
  return p + len;
}

function putAscii(buf: Buffer, p: number, s: string): number {
  for (let i = 0; i < s.length; i++) buf[p + i] = s.charCodeAt(i);
  return p + s.length;
}

/** Case-insensitive equality of two ASCII header names, without allocating. */
function sameName(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const lower = x | 0x20; // ASCII letters differ in case by 0x20 alone
    if (lower !== (y | 0x20) || lower < 0x61 || lower > 0x7a) return false;
  }
  return true;
}

function invalidHeader(name: string, part: 'name' | 'value'): HttpError {
  return new HttpError(
    500,
    part === 'name'
      ? `invalid header name ${JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}...` : name)}`
      : `invalid character in the value of header ${name.length > 64 ? `${name.slice(0, 64)}...` : name}`,
    'ERR_HTTP_INVALID_HEADER',
  );
}

function lengthMismatch(declared: number, sent: number): HttpError {
  return new HttpError(
    500,
    `the response declared ${declared} body bytes and ${sent > declared ? 'was given more' : `ended after ${sent}`}`,
    'ERR_HTTP_CONTENT_LENGTH_MISMATCH',
  );
}

function byteLength(body: string | Uint8Array): number {
  if (typeof body !== 'string') return body.byteLength;
  const len = body.length;
  if (len > 64) return Buffer.byteLength(body);
  for (let i = 0; i < len; i++) if (body.charCodeAt(i) > 0x7f) return Buffer.byteLength(body);
  return len;
}

/**
 * The response to one request, valid until it ends: afterwards calls that would change it throw
 * `ERR_HTTP_STALE` (`end()` again is a no-op), so a handler that kept it can never touch the next response
 * on the connection. Header names and values are validated while serialized (no CR/LF injection); the head
 * goes out with the first body bytes, in the same socket write as the rest of the turn's output.
 * Content-Length is set when the whole body is given to `end`, otherwise the body is chunked (HTTP/1.1) or
 * delimited by closing (HTTP/1.0). A declared length is enforced: more or fewer bytes throw
 * `ERR_HTTP_CONTENT_LENGTH_MISMATCH` and close the connection, so no byte of one response reads as the next.
 */
export class Http1Response implements Response {
  /** Status code to send (200 unless changed). */
  statusCode = 200;
  /** The head has been written. */
  headersSent = false;
  /** `end` was called (or the connection closed first). */
  finished = false;
  /** Body bytes written so far (for access logs). */
  bytesWritten = 0;

  /** @internal */ readonly ex: Exchange;
  /** @internal The exchange's generation this response belongs to. */
  readonly gen: number;
  private readonly conn: Conn;
  /** The request was HEAD: no body goes out whatever is written. */
  private readonly headOnly: boolean;
  private chunkedOut = false;
  /** Trailer field lines for the last chunk, or null. */
  private trailerLines: string | null = null;
  private declaredLength = -1;

  /** @internal Made by the exchange for each request. */
  constructor(ex: Exchange, gen: number, headOnly: boolean) {
    this.ex = ex;
    this.gen = gen;
    this.conn = ex.conn;
    this.headOnly = headOnly;
  }

  /** Throws unless this response is the exchange's current one and still open. */
  private live(): Exchange {
    const ex = this.ex;
    if (this.gen !== ex.generation) throw staleError('response');
    return ex;
  }

  /**
   * The connection is gone (closed, or closing after an error or the client leaving): nothing more of this
   * response can be sent. A streaming handler checks it, or `req.signal`, which fires at the same moment.
   */
  get closed(): boolean {
    if (!this.conn.closed) return false;
    if (this.gen === this.ex.generation) this.ex.abandon(); // so req.signal agrees at once
    return true;
  }

  /** Forgets status and headers set so far (before the head is sent): for an error answer after all. */
  reset(): this {
    const ex = this.live();
    if (this.headersSent) throw new HttpError(500, 'headers already sent', 'ERR_HTTP_HEADERS_SENT');
    this.statusCode = 200;
    this.declaredLength = -1;
    ex.clearResponseHeaders();
    return this;
  }

  /** Sets the status code (200-999). */
  status(code: number): this {
    this.live();
    if (!Number.isInteger(code) || code < 200 || code > 999) {
      throw new HttpError(500, `invalid status code ${code}`, 'ERR_HTTP_INVALID_STATUS');
    }
    this.statusCode = code;
    return this;
  }

  /** Sets header `name`, replacing any earlier value of it (case-insensitive). */
  header(name: string, value: HeaderValue): this {
    this.removeHeader(name);
    return this.appendHeader(name, value);
  }

  /** Adds a value of header `name` after any earlier ones (for `set-cookie`). */
  appendHeader(name: string, value: HeaderValue): this {
    const ex = this.live();
    if (this.headersSent) throw new HttpError(500, 'headers already sent', 'ERR_HTTP_HEADERS_SENT');
    if (typeof value === 'object') {
      for (const v of value) this.appendHeader(name, v);
      return this;
    }
    // Names and values are validated as they are serialized (one pass over the characters).
    ex.resNames.push(name);
    ex.resValues.push(typeof value === 'number' ? String(value) : value);
    return this;
  }

  /** The first value set for `name`, or undefined. */
  getHeader(name: string): string | undefined {
    const k = this.indexOf(name);
    return k === -1 ? undefined : this.ex.resValues[k];
  }

  /** Whether a value is set for `name`. */
  hasHeader(name: string): boolean {
    return this.indexOf(name) !== -1;
  }

  /** Removes every value of `name`. */
  removeHeader(name: string): this {
    const ex = this.ex;
    for (let k = this.indexOf(name); k !== -1; k = this.indexOf(name)) {
      ex.resNames.splice(k, 1);
      ex.resValues.splice(k, 1);
    }
    return this;
  }

  private indexOf(name: string): number {
    const names = this.live().resNames;
    for (let k = 0; k < names.length; k++) {
      const n = names[k]!;
      if (n === name || sameName(n, name)) return k;
    }
    return -1;
  }

  /** Whether this response carries a body at all (not for HEAD, 204 or 304). */
  private get bodyAllowed(): boolean {
    const s = this.statusCode;
    return s !== 204 && s !== 304 && !this.headOnly;
  }

  /**
   * Writes the head now, before the body: `length` is the body length to declare (-1 to stream it, chunked
   * for HTTP/1.1). `raw` adds header lines copied verbatim (they are not validated again: pass only lines a
   * strict parser accepted). The body then follows with `write`/`end`, exactly `length` bytes when declared.
   */
  sendHead(length: number, raw?: RawHeaders): void {
    this.live();
    if (this.headersSent) throw new HttpError(500, 'headers already sent', 'ERR_HTTP_HEADERS_SENT');
    if (!Number.isInteger(length) || length < -1)
      throw new HttpError(500, `invalid body length ${length}`, 'ERR_HTTP_INVALID_LENGTH');
    this.writeHead(length, raw);
    if (length >= 0) this.declaredLength = length;
  }

  /** Serializes the head into the connection's staging buffer. `length` is the body length, -1 when streaming. */
  private writeHead(length: number, raw?: RawHeaders): void {
    const ex = this.ex;
    const status = this.statusCode;
    // `statusCode` is a plain field: whatever was assigned to it is judged here, like `status()` judges.
    if (!Number.isInteger(status) || status < 200 || status > 999) {
      throw new HttpError(500, `invalid status code ${status}`, 'ERR_HTTP_INVALID_STATUS');
    }
    const names = ex.resNames;
    const values = ex.resValues;
    let bound = 192 + (raw?.size ?? 0);
    for (let k = 0; k < names.length; k++) bound += names[k]!.length + values[k]!.length + 4;
    const conn = this.conn;
    const buf = conn.reserve(bound);
    let p = conn.reservedAt;
    // The status line and our date line go first in one native copy, unless the handler set its own date.
    let hasDate = raw?.hasDate ?? false;
    for (let k = 0; k < names.length && !hasDate; k++)
      hasDate = names[k]!.length === 4 && sameName(names[k]!, 'date');
    if (hasDate) p = putBytes(buf, p, statusLineBytes(status));
    else p += writeLatin1(buf, statusAndDate(status), p);
    for (let k = 0; k < names.length; k++) {
      const name = names[k]!;
      const value = values[k]!;
      const len = name.length;
      if (len === 10 && sameName(name, 'connection')) {
        if (/(^|[\s,])close($|[\s,])/i.test(value)) ex.keepAlive = false;
        continue; // written below, from keepAlive
      } else if (len === 14 && sameName(name, 'content-length')) {
        if (!/^\d{1,15}$/.test(value)) throw invalidHeader(name, 'value');
        const declared = Number(value);
        if (length >= 0 && declared !== length && this.bodyAllowed) {
          throw new HttpError(
            500,
            'content-length does not match the body',
            'ERR_HTTP_CONTENT_LENGTH_MISMATCH',
          );
        }
        this.declaredLength = declared;
        length = -2; // declared by the handler
      } else if (len === 17 && sameName(name, 'transfer-encoding')) {
        continue; // framing is ours to choose
      }
      p = putName(buf, p, name);
      if (p < 0) throw invalidHeader(name, 'name');
      buf[p++] = 0x3a;
      buf[p++] = 0x20;
      p = putValue(buf, p, value);
      if (p < 0) throw invalidHeader(name, 'value');
      buf[p++] = 0x0d;
      buf[p++] = 0x0a;
    }
    if (raw !== undefined) p = raw.copy(buf, p);
    if (status !== 204 && status !== 304 && length !== -2) {
      if (length >= 0) {
        p = putAscii(buf, p, 'content-length: ');
        p = putDecimal(buf, p, length);
        buf[p++] = 0x0d;
        buf[p++] = 0x0a;
      } else if (ex.httpMinor === 1) {
        p = putAscii(buf, p, 'transfer-encoding: chunked\r\n');
        this.chunkedOut = !this.headOnly;
      } else {
        ex.keepAlive = false; // HTTP/1.0 without a length: the close ends the body
      }
    }
    ex.beforeHead();
    if (!ex.keepAlive) p = putAscii(buf, p, 'connection: close\r\n');
    else if (ex.httpMinor === 0) p = putAscii(buf, p, 'connection: keep-alive\r\n');
    buf[p++] = 0x0d;
    buf[p++] = 0x0a;
    this.headersSent = true;
    conn.commit(p);
  }

  /**
   * Streams body bytes (the head goes first). Returns false when the connection's outbound bytes are above
   * the high-water mark (wait for {@link drain} before writing more) and when the connection is gone
   * ({@link closed}; `drain` then rejects with `ERR_HTTP_CLOSED`, so a write/drain loop ends).
   */
  write(chunk: string | Uint8Array): boolean {
    if (this.finished) throw new HttpError(500, 'write after end', 'ERR_HTTP_WRITE_AFTER_END');
    const ex = this.live();
    const conn = this.conn;
    if (conn.closed) {
      ex.abandon();
      return false;
    }
    if (!this.headersSent) this.writeHead(-1);
    const n = byteLength(chunk);
    if (n === 0 || !this.bodyAllowed) return true;
    const declared = this.declaredLength;
    if (declared >= 0 && this.bytesWritten + n > declared) {
      // Bytes past the declared length would be read as the start of the next response: refuse them, and
      // end the connection after what was declared.
      this.ex.keepAlive = false;
      this.finished = true;
      this.ex.responseEnded();
      throw lengthMismatch(declared, this.bytesWritten + n);
    }
    if (this.chunkedOut) {
      const buf = conn.reserve(16);
      let p = conn.reservedAt;
      p = putHex(buf, p, n);
      buf[p++] = 0x0d;
      buf[p++] = 0x0a;
      conn.commit(p);
      conn.write(chunk);
      conn.writeLatin1('\r\n');
    } else {
      conn.write(chunk);
    }
    this.bytesWritten += n;
    return conn.outboundBuffered < conn.loop.options.highWaterMark;
  }

  /** Ends the response, with a last piece of body if given. A second call is a no-op. */
  end(body?: string | Uint8Array): void {
    if (this.finished) return;
    const ex = this.live();
    if (this.conn.closed) {
      // The client is gone: nothing to send.
      ex.abandon();
      this.finished = true;
      return;
    }
    if (!this.headersSent) {
      const data = body ?? EMPTY;
      const n = byteLength(data);
      // A Content-Length the handler set must match (writeHead refuses it before committing anything).
      this.writeHead(n);
      if (n !== 0 && this.bodyAllowed) {
        this.conn.write(data);
        this.bytesWritten = n;
      }
    } else {
      if (body !== undefined) this.write(body);
      if (this.chunkedOut)
        this.conn.writeLatin1(this.trailerLines === null ? '0\r\n\r\n' : `0\r\n${this.trailerLines}\r\n`);
    }
    const declared = this.declaredLength;
    this.finished = true;
    if (declared >= 0 && this.bodyAllowed && this.bytesWritten !== declared) {
      // Fewer bytes than declared: the client would wait for the rest, or read the next response as it.
      ex.keepAlive = false;
      ex.responseEnded();
      throw lengthMismatch(declared, this.bytesWritten);
    }
    ex.responseEnded();
  }

  /**
   * Adds a trailer field, sent after a chunked body (HTTP/1.1 has trailers only there: a response whose
   * length is declared, or to HTTP/1.0, goes without them). Set before `end`.
   */
  trailer(name: string, value: string): this {
    this.live();
    if (this.finished) throw new HttpError(500, 'write after end', 'ERR_HTTP_WRITE_AFTER_END');
    if (!isToken(name)) throw invalidHeader(name, 'name');
    if (!isFieldValue(value)) throw invalidHeader(name, 'value');
    this.trailerLines = `${this.trailerLines ?? ''}${name}: ${value}\r\n`;
    return this;
  }

  /**
   * Sends `value` as JSON with `content-type: application/json`. With a JSON Schema it is serialized by a
   * fast-json-stringify function compiled once per schema object.
   */
  json(value: unknown, schema?: object): void {
    const body = schema === undefined ? JSON.stringify(value) : serializerFor(schema)(value);
    if (!this.hasHeader('content-type')) this.appendHeader('content-type', 'application/json');
    this.end(body);
  }

  /**
   * Resolves once queued outbound bytes fall to the low-water mark. Rejects with an `HttpError`
   * `ERR_HTTP_CLOSED` if the connection is gone or goes away first.
   */
  drain(): Promise<void> {
    const ex = this.live();
    if (this.conn.closed) {
      ex.abandon();
      return Promise.reject(closedError());
    }
    return ex.drain();
  }

  /** Ends the response at once by closing the connection (`err` is logged as why): for a failure mid-body. */
  destroy(err?: Error): void {
    if (this.gen !== this.ex.generation) return;
    this.finished = true;
    this.conn.destroy(err);
  }

  /**
   * Accepts a protocol upgrade: sends 101 with `upgrade: <protocol>` (`headers.upgrade` when given, else the
   * client's value; for a CONNECT request, a 200 that makes the connection a tunnel) and the given headers
   * (each name and value checked whole), then hands the
   * connection, and any bytes that followed the request, to `handler`: its `onOpen` runs under the loop's
   * error handling and its returned `Action` applies.
   */
  upgrade(handler: EventHandler, headers: Readonly<Record<string, HeaderValue>> = {}): void {
    const ex = this.live();
    if (this.headersSent) throw new HttpError(500, 'headers already sent', 'ERR_HTTP_HEADERS_SENT');
    const protocol = ex.upgradeProtocol();
    if (protocol === undefined)
      throw new HttpError(500, 'the request asked for no upgrade', 'ERR_HTTP_NO_UPGRADE');
    const tunnel = protocol === 'CONNECT';
    // The protocol switched to: `headers.upgrade` when given (one of several the client offered), else
    // what the client asked for.
    let switched = protocol;
    for (const [name, value] of Object.entries(headers)) {
      if (name.toLowerCase() !== 'upgrade' || tunnel) continue;
      switched = String(typeof value === 'object' ? value.join(', ') : value);
      if (!isFieldValue(switched) || switched.trim() === '') throw invalidHeader(name, 'value');
    }
    let head = tunnel
      ? 'HTTP/1.1 200 OK\r\n'
      : `HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${switched}\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      if (!isToken(name)) throw invalidHeader(name, 'name');
      const lower = name.toLowerCase();
      if (lower === 'connection' || (lower === 'upgrade' && !tunnel)) continue; // written above
      for (const v of typeof value === 'object' ? value : [value]) {
        const text = String(v);
        if (!isFieldValue(text)) throw invalidHeader(name, 'value');
        head += `${name}: ${text}\r\n`;
      }
    }
    this.headersSent = this.finished = true;
    this.statusCode = tunnel ? 200 : 101;
    this.conn.writeLatin1(`${head}\r\n`);
    ex.upgraded(handler);
  }
}
