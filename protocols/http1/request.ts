import { Readable } from 'node:stream';
import type { Exchange } from './exchange.ts';
import { type HeadParser, latin1 } from './head.ts';

/** A consumer of a request body that takes bytes in place (zero-copy), for proxies and streaming codecs. */
export interface BodyConsumer {
  /**
   * Body bytes. The view is valid only during the call (copy what you keep). Return `false` to stop reading
   * from the client until `req.resumeBody()`.
   */
  data(chunk: Buffer): boolean | void;
  /** The body is complete; `trailers` are those of a chunked body (empty otherwise). */
  end(trailers: readonly [string, string][]): void;
  /** The body cannot complete: the client went away, timed out, or sent bad framing. */
  error(err: Error): void;
}

/** Whether `buf[start, start + text.length)` holds exactly the latin1 characters of `text`. */
function sameBytes(buf: Buffer, start: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (buf[start + i] !== text.charCodeAt(i)) return false;
  return true;
}

const EMPTY_HEAD = Buffer.alloc(0);

const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

/**
 * An HTTP/1.1 request. The server reuses one per connection, so a request (like its response) is valid
 * until its response ends; keep copies of anything needed after that. Header text is decoded only when
 * asked for.
 */
export class Request {
  /** Method as sent (`GET`, `POST`, ...). */
  method = 'GET';
  /** `'1.1'` or `'1.0'`. */
  httpVersion = '1.1';
  /** Free per-request slot for handlers and filters; cleared for every request. */
  locals: Record<string, unknown> | undefined = undefined;

  /** @internal */ readonly ex: Exchange;
  /** @internal */ buf: Buffer = Buffer.alloc(0);
  /** @internal Shift applied to the parser's offsets after the head was copied out of the read buffer. */
  shift = 0;
  private head: HeadParser;
  private targetText: string | undefined = undefined;
  private pathText: string | undefined = undefined;
  private queryText: string | undefined = undefined;
  private lastTarget = '';
  private lastPath: string | undefined = undefined;
  private lastQuery = '';

  /** @internal */
  constructor(ex: Exchange, head: HeadParser) {
    this.ex = ex;
    this.head = head;
  }

  /** @internal Starts a new request over the head just parsed in `buf`. */
  begin(buf: Buffer): void {
    const head = this.head;
    this.method = head.method;
    this.httpVersion = head.minor === 1 ? '1.1' : '1.0';
    this.buf = buf;
    this.shift = 0;
    this.targetText = this.pathText = this.queryText = undefined;
    this.locals = undefined;
  }

  /** @internal An empty request, for an error answered before any head parsed. */
  blank(): void {
    this.method = '';
    this.httpVersion = '1.1';
    this.buf = EMPTY_HEAD;
    this.shift = 0;
    this.targetText = this.pathText = this.queryText = '';
    this.locals = undefined;
  }

  /** @internal Copies the head out of the read buffer so it outlives the read turn. */
  detach(into: Buffer, headStart: number, headLength: number): void {
    this.buf.copy(into, 0, headStart, headStart + headLength);
    this.buf = into;
    this.shift = -headStart;
  }

  /** The request-target exactly as sent (origin-form, absolute-form, `*`, or authority-form). */
  get target(): string {
    if (this.targetText === undefined) {
      const start = this.head.targetStart + this.shift;
      const end = this.head.targetEnd + this.shift;
      // Keep-alive clients often ask for the same target again: reuse its string instead of a new one.
      const last = this.lastTarget;
      if (last.length === end - start && sameBytes(this.buf, start, last)) {
        this.targetText = last;
      } else {
        this.targetText = this.lastTarget = latin1(this.buf, start, end);
        this.lastPath = undefined;
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
    if (t === this.lastTarget && this.lastPath !== undefined) {
      this.pathText = this.lastPath;
      this.queryText = this.lastQuery;
      return;
    }
    const abs = t.charCodeAt(0) !== 0x2f ? ABSOLUTE.exec(t) : null;
    if (abs !== null) t = t.slice(abs[0].length) || '/';
    const q = t.indexOf('?');
    this.pathText = q === -1 ? t : t.slice(0, q) || '/';
    this.queryText = q === -1 ? '' : t.slice(q + 1);
    if (this.targetText === this.lastTarget) {
      this.lastPath = this.pathText;
      this.lastQuery = this.queryText;
    }
  }

  /** The query parsed (a new object each call). */
  searchParams(): URLSearchParams {
    return new URLSearchParams(this.query);
  }

  /** The first value of header `name` (case-insensitive), or undefined. */
  header(name: string): string | undefined {
    const k = this.findField(name.toLowerCase(), 0);
    return k === -1 ? undefined : this.fieldValue(k);
  }

  /** Every value of header `name`, in order. */
  headerValues(name: string): string[] {
    const lower = name.toLowerCase();
    const out: string[] = [];
    for (let k = this.findField(lower, 0); k !== -1; k = this.findField(lower, k + 1))
      out.push(this.fieldValue(k));
    return out;
  }

  /** Every header as `[name, value]` in the order received, names as sent. */
  headerPairs(): [string, string][] {
    const out: [string, string][] = [];
    for (let k = 0; k < this.head.fieldCount; k++) out.push([this.fieldName(k), this.fieldValue(k)]);
    return out;
  }

  /** Number of header fields. */
  get headerCount(): number {
    return this.head.fieldCount;
  }

  /** Name of field `k` as sent. */
  fieldName(k: number): string {
    const f = this.head.fields;
    return latin1(this.buf, f[k * 4]! + this.shift, f[k * 4 + 1]! + this.shift);
  }

  /** Whether field `k`'s name is `lower` (lower-case), compared in place without making a string. */
  fieldNameIs(k: number, lower: string): boolean {
    return this.head.nameIs(this.buf, k, lower, this.shift);
  }

  /** Length of field `k`'s name. */
  fieldNameLength(k: number): number {
    return this.head.nameLength(k);
  }

  /** Bytes {@link copyField} writes for field `k`. */
  fieldSize(k: number): number {
    return this.head.fieldSize(k);
  }

  /** Copies field `k` as received (`name: value\r\n`) into `out` at `p`, for proxies; returns the end. */
  copyField(k: number, out: Buffer, p: number): number {
    return this.head.copyField(this.buf, k, out, p, this.shift);
  }

  /** Value of field `k`, without surrounding whitespace. */
  fieldValue(k: number): string {
    const f = this.head.fields;
    return latin1(this.buf, f[k * 4 + 2]! + this.shift, f[k * 4 + 3]! + this.shift);
  }

  private findField(lower: string, from: number): number {
    return this.head.find(this.buf, lower, from, this.shift);
  }

  /** Whether the connection stays open after this exchange. */
  get keepAlive(): boolean {
    return this.ex.keepAlive;
  }

  /** The protocol asked for in `Upgrade` with `Connection: upgrade`, or undefined. */
  get upgrade(): string | undefined {
    const head = this.head;
    return head.connectionUpgrade && head.upgradeField >= 0 ? this.fieldValue(head.upgradeField) : undefined;
  }

  /** Content-Length as sent, or -1 (no body, or a chunked one). */
  get contentLength(): number {
    return this.head.contentLength;
  }

  /** Whether a body follows the head (Content-Length > 0 or chunked). */
  get hasBody(): boolean {
    return this.head.chunked || this.head.contentLength > 0;
  }

  /** Trailer fields of a chunked body, available once the body is complete. */
  get trailers(): readonly [string, string][] {
    return this.ex.bodyDecoder.trailers;
  }

  /** The client's IP address. */
  get remoteAddress(): string {
    return this.ex.conn.remoteAddress;
  }

  /**
   * The whole body in one buffer. Rejects with an `HttpError` 413 past `limit` bytes (default: the server's
   * `maxBodySize`); the server then answers 413 unless the response has started.
   */
  body(limit?: number): Promise<Buffer> {
    return this.ex.collectBody(limit);
  }

  /** The body decoded as UTF-8. */
  async text(limit?: number): Promise<string> {
    return (await this.body(limit)).toString('utf8');
  }

  /** The body parsed as JSON; a syntax error rejects with an `HttpError` 400. */
  async json<T = unknown>(limit?: number): Promise<T> {
    return this.ex.parseJson<T>(await this.body(limit));
  }

  /** Streams the body to `consumer` in place (zero-copy); see {@link BodyConsumer}. */
  pipe(consumer: BodyConsumer): void {
    this.ex.attachBody(consumer);
  }

  /**
   * Registers `listener` to run if the client goes away before the response ends (one listener per request;
   * a proxy uses it to abandon the upstream exchange).
   */
  onAbort(listener: () => void): void {
    this.ex.abortListener = listener;
  }

  /** Resumes reading after a consumer's `data` returned false. */
  resumeBody(): void {
    this.ex.resumeBody();
  }

  /** The body as a Node.js Readable of copied chunks, with backpressure. */
  stream(): Readable {
    const req = this;
    let paused = false;
    const readable = new Readable({
      read() {
        if (paused) {
          paused = false;
          req.resumeBody();
        }
      },
    });
    this.pipe({
      data(chunk) {
        if (!readable.push(Buffer.from(chunk))) {
          paused = true;
          return false;
        }
        return true;
      },
      end() {
        readable.push(null);
      },
      error(err) {
        readable.destroy(err);
      },
    });
    return readable;
  }
}
