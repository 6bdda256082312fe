import type { Readable } from 'node:stream';
import type { Conn } from '../../core/index.ts';
import type { BodyConsumer, Request } from './api.ts';
import { bodyStream, parseJsonBody } from './body-reading.ts';
import { HttpError } from './errors.ts';
import type { Exchange } from './exchange.ts';
import { type HeadParser, latin1 } from './head.ts';

/** Whether `buf[start, start + text.length)` holds exactly the latin1 characters of `text`. */
function sameBytes(buf: Buffer, start: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (buf[start + i] !== text.charCodeAt(i)) return false;
  return true;
}

const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/** The error a request or response used after its exchange finished throws. */
export function staleError(what: 'request' | 'response'): HttpError {
  return new HttpError(
    500,
    `this ${what} is over: its response ended (req and res are valid until then)`,
    'ERR_HTTP_STALE',
  );
}

/**
 * One HTTP/1.1 request. It is valid until its response has ended and its body was read (or discarded):
 * after that every method that reads the request throws `ERR_HTTP_STALE`, so a handler that kept it can never
 * read the next request's bytes by mistake. Header text is decoded only when asked for.
 */
export class Http1Request implements Request {
  /** Method as sent (`GET`, `POST`, ...). */
  readonly method: string;
  /** `'1.1'` or `'1.0'`. */
  readonly httpVersion: '1.1' | '1.0';
  /** Free per-request slot for handlers and filters. */
  locals: Record<string, unknown> | undefined = undefined;

  /** @internal */ readonly ex: Exchange;
  /** @internal The exchange's generation this request belongs to. */
  readonly gen: number;
  private readonly conn: Conn;
  private targetText: string | undefined = undefined;
  private pathText: string | undefined = undefined;
  private queryText: string | undefined = undefined;
  private controller: AbortController | null = null;
  private abortReason: HttpError | null = null;

  /** @internal Made by the exchange for each request. */
  constructor(ex: Exchange, gen: number, method: string, minor: number) {
    this.ex = ex;
    this.gen = gen;
    this.conn = ex.conn;
    this.method = method;
    this.httpVersion = minor === 1 ? '1.1' : '1.0';
  }

  /** @internal A request for an answer to a head that never parsed: no target, no fields. */
  blank(): void {
    this.targetText = this.pathText = this.queryText = '';
  }

  /** The parser holding this request's head; throws once the request is over. */
  private live(): HeadParser {
    if (this.gen !== this.ex.generation) throw staleError('request');
    return this.ex.head;
  }

  /** The request-target exactly as sent (origin-form, absolute-form, `*`, or authority-form). */
  get target(): string {
    if (this.targetText === undefined) {
      const head = this.live();
      const ex = this.ex;
      const buf = ex.headBuf;
      const start = head.targetStart + ex.headShift;
      const end = head.targetEnd + ex.headShift;
      // Keep-alive clients often ask for the same target again: reuse its string instead of a new one.
      const last = ex.lastTarget;
      if (last.length === end - start && sameBytes(buf, start, last)) {
        this.targetText = last;
      } else {
        this.targetText = ex.lastTarget = latin1(buf, start, end);
        ex.lastPath = undefined;
      }
    }
    return this.targetText;
  }

  /** The path: the target up to `?` (for absolute-form, without scheme and authority). */
  get path(): string {
    if (this.pathText === undefined) this.splitTarget();
    return this.pathText!;
  }

  /** The query string after `?`, without it; `''` when absent. */
  get query(): string {
    if (this.queryText === undefined) this.splitTarget();
    return this.queryText!;
  }

  private splitTarget(): void {
    let t = this.target;
    const ex = this.ex;
    if (t === ex.lastTarget && ex.lastPath !== undefined) {
      this.pathText = ex.lastPath;
      this.queryText = ex.lastQuery;
      return;
    }
    const abs = t.charCodeAt(0) !== 0x2f ? ABSOLUTE.exec(t) : null;
    if (abs !== null) t = t.slice(abs[0].length) || '/';
    const q = t.indexOf('?');
    this.pathText = q === -1 ? t : t.slice(0, q) || '/';
    this.queryText = q === -1 ? '' : t.slice(q + 1);
    if (this.targetText === ex.lastTarget) {
      ex.lastPath = this.pathText;
      ex.lastQuery = this.queryText;
    }
  }

  /** The query parsed (a new object each call). */
  searchParams(): URLSearchParams {
    return new URLSearchParams(this.query);
  }

  /** The first value of header `name` (case-insensitive), or undefined. */
  header(name: string): string | undefined {
    const k = this.live().find(this.ex.headBuf, name, 0, this.ex.headShift);
    return k === -1 ? undefined : this.fieldValue(k);
  }

  /** Every value of header `name`, in order. */
  headerValues(name: string): string[] {
    const head = this.live();
    const buf = this.ex.headBuf;
    const shift = this.ex.headShift;
    const out: string[] = [];
    for (let k = head.find(buf, name, 0, shift); k !== -1; k = head.find(buf, name, k + 1, shift))
      out.push(this.fieldValue(k));
    return out;
  }

  /** Every header as `[name, value]` in the order received, names as sent. */
  headerPairs(): [string, string][] {
    const out: [string, string][] = [];
    for (let k = 0; k < this.live().fieldCount; k++) out.push([this.fieldName(k), this.fieldValue(k)]);
    return out;
  }

  /** Number of header fields. */
  get headerCount(): number {
    return this.live().fieldCount;
  }

  /** Name of field `k` as sent. */
  fieldName(k: number): string {
    const f = this.live().fields;
    const shift = this.ex.headShift;
    return latin1(this.ex.headBuf, f[k * 4]! + shift, f[k * 4 + 1]! + shift);
  }

  /** Whether field `k`'s name is `lower` (lower-case), compared in place without making a string. */
  fieldNameIs(k: number, lower: string): boolean {
    return this.live().nameIs(this.ex.headBuf, k, lower, this.ex.headShift);
  }

  /** Length of field `k`'s name. */
  fieldNameLength(k: number): number {
    return this.live().nameLength(k);
  }

  /** Bytes {@link copyField} writes for field `k`. */
  fieldSize(k: number): number {
    return this.live().fieldSize(k);
  }

  /** Copies field `k` as received (`name: value\r\n`) into `out` at `p`, for proxies; returns the end. */
  copyField(k: number, out: Buffer, p: number): number {
    return this.live().copyField(this.ex.headBuf, k, out, p, this.ex.headShift);
  }

  /** Value of field `k`, without surrounding whitespace. */
  fieldValue(k: number): string {
    const f = this.live().fields;
    const shift = this.ex.headShift;
    return latin1(this.ex.headBuf, f[k * 4 + 2]! + shift, f[k * 4 + 3]! + shift);
  }

  /** Whether the connection stays open after this exchange (as decided so far). */
  get keepAlive(): boolean {
    this.live();
    return this.ex.keepAlive;
  }

  /** The protocol asked for in `Upgrade` with `Connection: upgrade`, or undefined. */
  get upgrade(): string | undefined {
    const head = this.live();
    return head.connectionUpgrade && head.upgradeField >= 0 ? this.fieldValue(head.upgradeField) : undefined;
  }

  /** Content-Length as sent, or -1 (no body, or a chunked one). */
  get contentLength(): number {
    return this.live().contentLength;
  }

  /** Whether a body follows the head (Content-Length > 0 or chunked). */
  get hasBody(): boolean {
    const head = this.live();
    return head.chunked || head.contentLength > 0;
  }

  /** Trailer fields of a chunked body, available once the body is complete. */
  get trailers(): readonly [string, string][] {
    this.live();
    return this.ex.bodyDecoder.trailers;
  }

  /** The client's IP address ('' for Unix sockets). */
  get remoteAddress(): string {
    return this.conn.remoteAddress;
  }

  /** Whether the request came over TLS (`conn.tls` says what was negotiated). */
  get secure(): boolean {
    return this.conn.secure;
  }

  /**
   * Aborted when the request ends before the handler answered it: the client went away (the reason is an
   * `HttpError` with code `ERR_HTTP_CLOSED`), or the server answered an error in its place (a body timeout:
   * 408, a body cut short or badly framed: 400). Pass it to `fetch`, timers or your own loops; any number of
   * listeners may use it. Made on first use, so requests that never ask pay nothing.
   */
  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.abortReason !== null) this.controller.abort(this.abortReason);
      else if (this.ex.aborted(this)) this.controller.abort(closedError());
    }
    return this.controller.signal;
  }

  /** @internal The request ended before its handler answered (`reason` says why). */
  abort(reason: HttpError): void {
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  /**
   * The whole body in one buffer. Rejects with an `HttpError` 413 past `limit` bytes (default: the server's
   * `maxBodySize`); the server then answers 413 unless the response has started.
   */
  body(limit?: number): Promise<Buffer> {
    this.live();
    return this.ex.collectBody(limit);
  }

  /** The body decoded as UTF-8. */
  async text(limit?: number): Promise<string> {
    return (await this.body(limit)).toString('utf8');
  }

  /** The body parsed as JSON; a syntax error rejects with an `HttpError` 400. */
  async json<T = unknown>(limit?: number): Promise<T> {
    return parseJsonBody<T>(await this.body(limit));
  }

  /** Streams the body to `consumer` in place (zero-copy); see {@link BodyConsumer}. */
  pipe(consumer: BodyConsumer): void {
    this.live();
    this.ex.attachBody(consumer);
  }

  /**
   * Registers `listener` to run if the client goes away before the response ends: one listener per request,
   * without the cost of an `AbortSignal` (a proxy uses it to abandon its upstream exchange).
   */
  onAbort(listener: () => void): void {
    this.live();
    this.ex.abortListener = listener;
  }

  /** Resumes reading after a consumer's `data` returned false. */
  resumeBody(): void {
    if (this.gen === this.ex.generation) this.ex.resumeBody();
  }

  /** The body as a Node.js Readable of copied chunks, with backpressure. */
  stream(): Readable {
    return bodyStream(this);
  }
}

/** Why a request was aborted or a write refused: the client closed the connection. */
export function closedError(cause?: Error): HttpError {
  const err = new HttpError(499, 'the client closed the connection', 'ERR_HTTP_CLOSED');
  if (cause !== undefined) (err as { cause?: unknown }).cause = cause;
  return err;
}
