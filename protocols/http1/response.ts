import fastJson from 'fast-json-stringify';
import type { EventHandler } from '../../core/index.ts';
import { TCHAR } from './chars.ts';
import { HttpError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import { currentDateBytes, statusLineBytes } from './status.ts';

const EMPTY = Buffer.alloc(0);

/** Header lines copied verbatim into a head (a proxy forwarding an upstream's fields as bytes). */
export interface RawHeaders {
  /** An upper bound of the bytes `copy` writes. */
  readonly size: number;
  /** Whether the lines include a Date field (the server then adds none). */
  readonly hasDate: boolean;
  /** Writes the lines (each ending in CRLF) into `buf` at `p`; returns the end. */
  copy(buf: Buffer, p: number): number;
}

/** A header value: numbers are written in decimal, arrays become one field line per element. */
export type HeaderValue = string | number | readonly string[];

/** A compiled fast-json-stringify serializer per schema object. */
const serializers = new WeakMap<object, (value: unknown) => string>();

function serializerFor(schema: object): (value: unknown) => string {
  let s = serializers.get(schema);
  if (s === undefined) {
    s = fastJson(schema as Parameters<typeof fastJson>[0]) as (value: unknown) => string;
    serializers.set(schema, s);
  }
  return s;
}

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

/**
 * Copies header value `s` to `buf[p]`, checking every character is HTAB, SP, visible ASCII or obs-text
 * (so no CR, LF or NUL can split the head); returns the end offset, or -1 if invalid.
 */
function putValue(buf: Buffer, p: number, s: string): number {
  const len = s.length;
  for (let i = 0; i < len; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || (c < 0x20 && c !== 0x09) || c === 0x7f) return -1;
    buf[p + i] = c;
  }
  return p + len;
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

/** Case-insensitive equality with a lower-case ASCII name, without allocating. */
function isNamed(name: string, lower: string): boolean {
  if (name.length !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    const c = name.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a ? c + 0x20 : c) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

const scratch = Buffer.allocUnsafe(8192);

function invalidHeader(name: string, part: 'name' | 'value'): HttpError {
  return new HttpError(
    500,
    part === 'name'
      ? `invalid header name ${JSON.stringify(name)}`
      : `invalid character in the value of header ${name}`,
    'ERR_HTTP_INVALID_HEADER',
  );
}

function checkHeader(name: string, value: string): void {
  if (putName(scratch, 0, name.slice(0, 8192)) < 0) throw invalidHeader(name, 'name');
  if (value.length <= 8192 ? putValue(scratch, 0, value) < 0 : !/^[\t\x20-\x7e\x80-\xff]*$/.test(value)) {
    throw invalidHeader(name, 'value');
  }
}

function byteLength(body: string | Uint8Array): number {
  if (typeof body !== 'string') return body.byteLength;
  const len = body.length;
  if (len > 64) return Buffer.byteLength(body);
  for (let i = 0; i < len; i++) if (body.charCodeAt(i) > 0x7f) return Buffer.byteLength(body);
  return len;
}

/**
 * The response to one request. The server reuses one per connection; it is valid until `end`. Header names
 * and values are validated when set (no CR/LF injection); the head goes out with the first body bytes, in the
 * same socket write as the rest of the turn's output. Content-Length is set when the whole body is given to
 * `end`, otherwise the body is chunked (HTTP/1.1) or delimited by closing (HTTP/1.0).
 */
export class Response {
  /** Status code to send (200 unless changed). */
  statusCode = 200;
  /** The head has been written. */
  headersSent = false;
  /** `end` was called. */
  finished = false;
  /** Body bytes written so far (for access logs). */
  bytesWritten = 0;

  /** @internal */ readonly ex: Exchange;
  private readonly names: string[] = [];
  private readonly values: string[] = [];
  private chunkedOut = false;
  private declaredLength = -1;

  /** @internal */
  constructor(ex: Exchange) {
    this.ex = ex;
  }

  /** @internal */
  begin(): void {
    this.statusCode = 200;
    this.headersSent = this.finished = false;
    this.bytesWritten = 0;
    this.chunkedOut = false;
    this.declaredLength = -1;
    if (this.names.length !== 0) {
      while (this.names.pop() !== undefined);
      while (this.values.pop() !== undefined);
    }
  }

  /** Forgets status and headers set so far (before the head is sent): for an error answer after all. */
  reset(): this {
    if (this.headersSent) throw new HttpError(500, 'headers already sent', 'ERR_HTTP_HEADERS_SENT');
    this.statusCode = 200;
    this.declaredLength = -1;
    while (this.names.pop() !== undefined);
    while (this.values.pop() !== undefined);
    return this;
  }

  /** Sets the status code (200-999). */
  status(code: number): this {
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
    if (this.headersSent) throw new HttpError(500, 'headers already sent', 'ERR_HTTP_HEADERS_SENT');
    if (typeof value === 'object') {
      for (const v of value) this.appendHeader(name, v);
      return this;
    }
    // Names and values are validated as they are serialized (one pass over the characters).
    const text = typeof value === 'number' ? String(value) : value;
    this.names.push(name);
    this.values.push(text);
    return this;
  }

  /** The first value set for `name`, or undefined. */
  getHeader(name: string): string | undefined {
    const k = this.indexOf(name);
    return k === -1 ? undefined : this.values[k];
  }

  /** Whether a value is set for `name`. */
  hasHeader(name: string): boolean {
    return this.indexOf(name) !== -1;
  }

  /** Removes every value of `name`. */
  removeHeader(name: string): this {
    for (let k = this.indexOf(name); k !== -1; k = this.indexOf(name)) {
      this.names.splice(k, 1);
      this.values.splice(k, 1);
    }
    return this;
  }

  private indexOf(name: string): number {
    const names = this.names;
    if (names.length === 0) return -1;
    const lower = name.toLowerCase();
    for (let k = 0; k < names.length; k++) {
      const n = names[k]!;
      if (n === name || isNamed(n, lower)) return k;
    }
    return -1;
  }

  /** Whether this status may carry a body at all. */
  private get bodyAllowed(): boolean {
    const s = this.statusCode;
    return s !== 204 && s !== 304 && this.ex.req.method !== 'HEAD';
  }

  /**
   * Writes the head now, before the body: `length` is the body length to declare (-1 to stream it, chunked
   * for HTTP/1.1). `raw` adds header lines copied verbatim (they are not validated again: pass only lines a
   * strict parser accepted). The body then follows with `write`/`end`.
   */
  sendHead(length: number, raw?: RawHeaders): void {
    if (this.headersSent) throw new HttpError(500, 'headers already sent', 'ERR_HTTP_HEADERS_SENT');
    this.writeHead(length, raw);
    if (length >= 0) this.declaredLength = length;
  }

  /** Serializes the head into the connection's staging buffer. `length` is the body length, -1 when streaming. */
  private writeHead(length: number, raw?: RawHeaders): void {
    const ex = this.ex;
    const status = this.statusCode;
    const names = this.names;
    const values = this.values;
    let bound = 192 + (raw?.size ?? 0);
    for (let k = 0; k < names.length; k++) bound += names[k]!.length + values[k]!.length + 4;
    const conn = ex.conn;
    const buf = conn.reserve(bound);
    let p = conn.reservedAt;
    p = putBytes(buf, p, statusLineBytes(status));
    let hasDate = false;
    for (let k = 0; k < names.length; k++) {
      const name = names[k]!;
      const value = values[k]!;
      const len = name.length;
      if (len === 4 && isNamed(name, 'date')) {
        hasDate = true;
      } else if (len === 10 && isNamed(name, 'connection')) {
        if (/(^|[\s,])close($|[\s,])/i.test(value)) ex.keepAlive = false;
        continue; // written below, from keepAlive
      } else if (len === 14 && isNamed(name, 'content-length')) {
        if (!/^\d{1,15}$/.test(value)) throw invalidHeader(name, 'value');
        this.declaredLength = Number(value);
        if (length >= 0 && this.declaredLength !== length && this.bodyAllowed) {
          throw new HttpError(500, 'content-length does not match the body', 'ERR_HTTP_CONTENT_LENGTH');
        }
        length = -2; // declared by the handler
      } else if (len === 17 && isNamed(name, 'transfer-encoding')) {
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
    if (raw !== undefined) {
      p = raw.copy(buf, p);
      hasDate ||= raw.hasDate;
    }
    if (!hasDate) p = putBytes(buf, p, currentDateBytes());
    if (status !== 204 && status !== 304 && length !== -2) {
      if (length >= 0) {
        p = putAscii(buf, p, 'content-length: ');
        p = putDecimal(buf, p, length);
        buf[p++] = 0x0d;
        buf[p++] = 0x0a;
      } else if (ex.req.httpVersion === '1.1') {
        p = putAscii(buf, p, 'transfer-encoding: chunked\r\n');
        this.chunkedOut = ex.req.method !== 'HEAD';
      } else {
        ex.keepAlive = false; // HTTP/1.0 without a length: the close ends the body
      }
    }
    ex.beforeHead();
    if (!ex.keepAlive) p = putAscii(buf, p, 'connection: close\r\n');
    else if (ex.req.httpVersion === '1.0') p = putAscii(buf, p, 'connection: keep-alive\r\n');
    buf[p++] = 0x0d;
    buf[p++] = 0x0a;
    this.headersSent = true;
    conn.commit(p);
  }

  /**
   * Streams body bytes (the head goes first). Returns false when the connection's outbound bytes are above
   * the high-water mark: wait for {@link drain} before writing more.
   */
  write(chunk: string | Uint8Array): boolean {
    if (this.finished) throw new HttpError(500, 'write after end', 'ERR_HTTP_WRITE_AFTER_END');
    if (!this.headersSent) this.writeHead(-1);
    const n = byteLength(chunk);
    if (n === 0 || !this.bodyAllowed) return true;
    const conn = this.ex.conn;
    if (this.chunkedOut) {
      conn.writeLatin1(`${n.toString(16)}\r\n`);
      conn.write(chunk);
      conn.writeLatin1('\r\n');
    } else {
      conn.write(chunk);
    }
    this.bytesWritten += n;
    return conn.outboundBuffered < conn.loop.options.highWaterMark;
  }

  /** Ends the response, with a last piece of body if given. */
  end(body?: string | Uint8Array): void {
    if (this.finished) return;
    if (!this.headersSent) {
      const data = body ?? EMPTY;
      const n = byteLength(data);
      this.writeHead(n);
      if (n !== 0 && this.bodyAllowed) {
        this.ex.conn.write(data);
        this.bytesWritten = n;
      }
    } else {
      if (body !== undefined) this.write(body);
      if (this.chunkedOut) this.ex.conn.writeLatin1('0\r\n\r\n');
    }
    if (this.declaredLength >= 0 && this.bodyAllowed && this.bytesWritten !== this.declaredLength) {
      // The declared length was not honoured: the connection cannot be framed any more.
      this.ex.keepAlive = false;
    }
    this.finished = true;
    this.ex.responseEnded();
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

  /** Resolves once queued outbound bytes fall to the low-water mark (or the connection closes). */
  drain(): Promise<void> {
    return this.ex.drain();
  }

  /**
   * Accepts a protocol upgrade: sends 101 with `upgrade: <protocol>` and the given headers, then hands the
   * connection, and any bytes that followed the request, to `handler` (its `onOpen` runs first).
   */
  upgrade(handler: EventHandler, headers: Readonly<Record<string, HeaderValue>> = {}): void {
    if (this.headersSent) throw new HttpError(500, 'headers already sent', 'ERR_HTTP_HEADERS_SENT');
    const protocol = this.ex.req.upgrade;
    if (protocol === undefined)
      throw new HttpError(500, 'the request asked for no upgrade', 'ERR_HTTP_NO_UPGRADE');
    let head = `HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${protocol}\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      for (const v of typeof value === 'object' ? value : [value]) {
        const text = String(v);
        checkHeader(name, text);
        head += `${name}: ${text}\r\n`;
      }
    }
    this.headersSent = this.finished = true;
    this.statusCode = 101;
    this.ex.conn.writeLatin1(`${head}\r\n`);
    this.ex.upgraded(handler);
  }
}
