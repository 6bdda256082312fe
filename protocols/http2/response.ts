import type { EventHandler } from '../../core/index.ts';
import { type HeaderValue, HttpError, type RawHeaders, type Response } from '../http1/index.ts';
import { serializerFor } from '../http1/json-schema.ts';
import { validName } from './fields.ts';
import type { Http2Stream } from './stream.ts';

function staleError(): HttpError {
  return new HttpError(
    500,
    'this response is over: it ended (req and res are valid until then)',
    'ERR_HTTP_STALE',
  );
}

function headersSentError(): HttpError {
  return new HttpError(500, 'headers already sent', 'ERR_HTTP_HEADERS_SENT');
}

/** Whether every character of a value may go out: HTAB, SP, visible ASCII, obs-text (no CR, LF, NUL, DEL). */
function fieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || (c < 0x20 && c !== 0x09) || c === 0x7f) return false;
  }
  return true;
}

/** `name` lower-cased (HTTP/2 field names are lower-case, §8.2.1) and checked; throws when invalid. */
export function outName(name: string): string {
  let lower = name;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) {
      lower = name.toLowerCase();
      break;
    }
  }
  if (!validName(lower)) {
    throw new HttpError(
      500,
      `invalid header name ${JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}...` : name)}`,
      'ERR_HTTP_INVALID_HEADER',
    );
  }
  return lower;
}

export function outValue(name: string, value: string): string {
  if (!fieldValue(value)) {
    throw new HttpError(
      500,
      `invalid character in the value of header ${name.length > 64 ? `${name.slice(0, 64)}...` : name}`,
      'ERR_HTTP_INVALID_HEADER',
    );
  }
  return value;
}

function lengthMismatch(declared: number, sent: number): HttpError {
  return new HttpError(
    500,
    `the response declared ${declared} body bytes and ${sent > declared ? 'was given more' : `ended after ${sent}`}`,
    'ERR_HTTP_CONTENT_LENGTH_MISMATCH',
  );
}

/**
 * An HTTP/2 response: the handler API of every version ({@link Response}) over a stream. The head is a
 * HEADERS frame (HPACK-coded, names lower-cased, connection-specific fields dropped), the body DATA frames
 * within the peer's flow-control windows, trailers a last HEADERS frame.
 */
export class Http2Response implements Response {
  statusCode = 200;
  headersSent = false;
  finished = false;
  bytesWritten = 0;
  /** @internal */ readonly h2: Http2Stream;
  /** @internal The request was HEAD: no body goes out. */
  readonly headOnly: boolean;
  /** @internal The declared body length, or -1. */
  declaredLength = -1;
  /** A head `sendHead` accepted and not yet framed: the length it advertises (-1: none), or NO_HEAD. */
  private pendingHead = NO_HEAD;

  /** @internal */
  constructor(stream: Http2Stream, headOnly: boolean) {
    this.h2 = stream;
    this.headOnly = headOnly;
  }

  private live(): Http2Stream {
    if (this.finished) throw staleError();
    return this.h2;
  }

  get closed(): boolean {
    const s = this.h2;
    return s.abortedWith !== null || s.session.conn.closed;
  }

  /** @internal Whether a body goes out at all (not for HEAD, 204 or 304). */
  get bodyAllowed(): boolean {
    const s = this.statusCode;
    return s !== 204 && s !== 304 && !this.headOnly;
  }

  reset(): this {
    const s = this.live();
    if (this.headersSent) throw headersSentError();
    this.statusCode = 200;
    this.declaredLength = -1;
    s.resNames.length = 0;
    s.resValues.length = 0;
    s.resTrailers = null;
    return this;
  }

  status(code: number): this {
    this.live();
    if (!Number.isInteger(code) || code < 200 || code > 999)
      throw new HttpError(500, `invalid status code ${code}`, 'ERR_HTTP_INVALID_STATUS');
    this.statusCode = code;
    return this;
  }

  header(name: string, value: HeaderValue): this {
    this.removeHeader(name);
    return this.appendHeader(name, value);
  }

  appendHeader(name: string, value: HeaderValue): this {
    const s = this.live();
    if (this.headersSent) throw headersSentError();
    if (typeof value === 'object') {
      for (const v of value) this.appendHeader(name, v);
      return this;
    }
    const lower = outName(name);
    s.resNames.push(lower);
    s.resValues.push(outValue(name, typeof value === 'number' ? String(value) : value));
    return this;
  }

  getHeader(name: string): string | undefined {
    const k = this.indexOf(name);
    return k === -1 ? undefined : this.h2.resValues[k];
  }

  hasHeader(name: string): boolean {
    return this.indexOf(name) !== -1;
  }

  removeHeader(name: string): this {
    const s = this.h2;
    for (let k = this.indexOf(name); k !== -1; k = this.indexOf(name)) {
      s.resNames.splice(k, 1);
      s.resValues.splice(k, 1);
    }
    return this;
  }

  private indexOf(name: string): number {
    const names = this.live().resNames;
    const lower = name.toLowerCase();
    for (let k = 0; k < names.length; k++) if (names[k] === lower) return k;
    return -1;
  }

  /**
   * Adds a trailer field, sent after the body in a last HEADERS frame (gRPC's `grpc-status` travels so).
   * Set before `end`.
   */
  trailer(name: string, value: string): this {
    const s = this.live();
    const lower = outName(name);
    s.resTrailers ??= [];
    s.resTrailers.push([lower, outValue(name, value)]);
    return this;
  }

  sendHead(length: number, raw?: RawHeaders): void {
    this.live();
    if (this.headersSent) throw headersSentError();
    if (!Number.isInteger(length) || length < -1)
      throw new HttpError(500, `invalid body length ${length}`, 'ERR_HTTP_INVALID_LENGTH');
    if (raw !== undefined) addRawLines(this, raw);
    const advertised = this.checkHead(length);
    if (length >= 0 && this.declaredLength < 0) this.declaredLength = length;
    this.headersSent = true;
    // The frame waits for the rest of this turn: a proxy that learns at once that no body follows (an
    // upstream's HEADERS with END_STREAM, gRPC's trailers-only answers) ends the stream on the same frame.
    this.pendingHead = advertised;
    queueMicrotask(() => this.flushHead(false));
  }

  /** Sends a head `sendHead` left pending. */
  private flushHead(endStream: boolean): void {
    const advertised = this.pendingHead;
    if (advertised === NO_HEAD) return;
    this.pendingHead = NO_HEAD;
    const s = this.h2;
    if (!s.live || this.closed) return;
    s.session.writeHeaders(s, this.statusCode, advertised, endStream);
  }

  /**
   * Checks status and a content-length set by the handler against `length` (the body length known, -1 when
   * streamed) before anything is sent; returns the length to advertise (-1: none).
   */
  private checkHead(length: number): number {
    const status = this.statusCode;
    if (!Number.isInteger(status) || status < 200 || status > 999)
      throw new HttpError(500, `invalid status code ${status}`, 'ERR_HTTP_INVALID_STATUS');
    const s = this.h2;
    const names = s.resNames;
    for (let k = 0; k < names.length; k++) {
      if (names[k] !== 'content-length') continue;
      const value = s.resValues[k]!;
      if (!/^\d{1,15}$/.test(value))
        throw new HttpError(500, 'invalid content-length', 'ERR_HTTP_INVALID_HEADER');
      const declared = Number(value);
      if (length >= 0 && declared !== length && this.bodyAllowed)
        throw new HttpError(
          500,
          'content-length does not match the body',
          'ERR_HTTP_CONTENT_LENGTH_MISMATCH',
        );
      this.declaredLength = declared;
      return -1; // the handler's own field goes out
    }
    return length >= 0 && status !== 204 && status !== 304 ? length : -1;
  }

  write(chunk: string | Uint8Array): boolean {
    if (this.finished) throw new HttpError(500, 'write after end', 'ERR_HTTP_WRITE_AFTER_END');
    const s = this.h2;
    if (this.closed) return false;
    if (!this.headersSent) {
      const advertised = this.checkHead(-1);
      this.headersSent = true;
      s.session.writeHeaders(s, this.statusCode, advertised, false);
    } else this.flushHead(false);
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    const n = data.byteLength;
    if (n === 0 || !this.bodyAllowed) return true;
    const declared = this.declaredLength;
    if (declared >= 0 && this.bytesWritten + n > declared) {
      this.finished = true;
      s.session.failResponse(s);
      throw lengthMismatch(declared, this.bytesWritten + n);
    }
    this.bytesWritten += n;
    s.session.sendData(s, data, false);
    return s.session.canWrite(s);
  }

  end(body?: string | Uint8Array): void {
    if (this.finished) return;
    const s = this.h2;
    if (this.closed) {
      this.finished = true;
      s.session.responseEnded(s);
      return;
    }
    const trailers = s.resTrailers !== null;
    const data = body === undefined ? EMPTY : typeof body === 'string' ? Buffer.from(body) : body;
    const n = this.bodyAllowed ? data.byteLength : 0;
    // Every check before the first frame: END_STREAM may close the stream at once, and a stream that closes
    // must find its response finished (or it would count as cancelled).
    let advertised = NO_HEAD;
    // A HEAD answer advertises the length its GET would have (as over HTTP/1.1).
    if (!this.headersSent) advertised = this.checkHead(data.byteLength);
    const declared = this.declaredLength;
    if (declared >= 0 && this.bodyAllowed && this.bytesWritten + n !== declared) {
      this.finished = true;
      s.session.failResponse(s);
      throw lengthMismatch(declared, this.bytesWritten + n);
    }
    this.finished = true;
    this.bytesWritten += n;
    const bodyFrames = n !== 0 || (this.headersSent && this.pendingHead === NO_HEAD);
    if (advertised !== NO_HEAD) {
      this.headersSent = true;
      s.session.writeHeaders(s, this.statusCode, advertised, !bodyFrames && !trailers);
    } else this.flushHead(!bodyFrames && !trailers);
    if (bodyFrames) s.session.sendData(s, n === 0 ? EMPTY : data, !trailers);
    if (trailers) s.session.sendTrailers(s);
    s.session.responseEnded(s);
  }

  json(value: unknown, schema?: object): void {
    const body = schema === undefined ? JSON.stringify(value) : serializerFor(schema)(value);
    if (!this.hasHeader('content-type')) this.appendHeader('content-type', 'application/json');
    this.end(body);
  }

  drain(): Promise<void> {
    const s = this.live();
    return s.drain();
  }

  destroy(err?: Error): void {
    if (this.finished) return;
    this.finished = true;
    const s = this.h2;
    if (err !== undefined)
      s.session.conn.loop.log.warn('http2 response destroyed', { stream: s.id, error: err });
    s.session.failResponse(s);
  }

  upgrade(_handler: EventHandler, _headers?: Readonly<Record<string, HeaderValue>>): void {
    throw new HttpError(500, 'HTTP/2 has no protocol upgrade', 'ERR_HTTP_NO_UPGRADE');
  }
}

const EMPTY = Buffer.alloc(0);
/** No head waits to be framed. */
const NO_HEAD = -3;
let rawScratch = Buffer.allocUnsafe(4096);

/** Adds raw HTTP/1.1 field lines (`name: value\r\n`, from a strict parser) as fields. */
function addRawLines(res: Http2Response, raw: RawHeaders): void {
  if (rawScratch.length < raw.size)
    rawScratch = Buffer.allocUnsafe(Math.max(raw.size, rawScratch.length * 2));
  const end = raw.copy(rawScratch, 0);
  const text = rawScratch.toString('latin1', 0, end);
  let p = 0;
  while (p < text.length) {
    let eol = text.indexOf('\r\n', p);
    if (eol === -1) eol = text.length;
    const colon = text.indexOf(':', p);
    if (colon > p && colon < eol) {
      const name = text.slice(p, colon).toLowerCase();
      const value = text.slice(colon + 1, eol).trim();
      // Framing and connection fields are HTTP/1.1's; HTTP/2 frames the body itself (§8.2.2).
      if (!connectionField(name)) res.appendHeader(name, value);
    }
    p = eol + 2;
  }
}

function connectionField(name: string): boolean {
  return (
    name === 'connection' ||
    name === 'keep-alive' ||
    name === 'proxy-connection' ||
    name === 'transfer-encoding' ||
    name === 'upgrade'
  );
}
