import type { Readable } from 'node:stream';
import { writeLatin1 } from '../../core/index.ts';
import { bodyStream, parseJsonBody } from '../http1/body-reading.ts';
import { type BodyConsumer, HttpError, type Request } from '../http1/index.ts';
import type { Http2Stream } from './stream.ts';

function staleError(): HttpError {
  return new HttpError(
    500,
    'this request is over: its response ended (req and res are valid until then)',
    'ERR_HTTP_STALE',
  );
}

/**
 * An HTTP/2 request: the handler API of every version ({@link Request}) over a stream's decoded head.
 * Fields are kept as decoded strings (HPACK decodes them anyway); `copyField` writes HTTP/1.1 field lines, so
 * a proxy forwards them to an HTTP/1.1 upstream as it forwards an HTTP/1.1 request's.
 */
export class Http2Request implements Request {
  readonly method: string;
  readonly httpVersion = '2' as const;
  locals: Record<string, unknown> | undefined = undefined;
  /** @internal */ readonly h2: Http2Stream;
  private pathText: string | undefined = undefined;
  private queryText = '';
  private controller: AbortController | null = null;
  private abortReason: HttpError | null = null;

  /** @internal */
  constructor(stream: Http2Stream) {
    this.h2 = stream;
    this.method = stream.head.method;
  }

  /** Throws once the request is over (its response ended and the stream left the connection). */
  private live(): Http2Stream {
    const s = this.h2;
    if (s.res.finished && !s.live) throw staleError();
    return s;
  }

  get target(): string {
    return this.h2.head.path;
  }

  get path(): string {
    if (this.pathText === undefined) this.split();
    return this.pathText!;
  }

  get query(): string {
    if (this.pathText === undefined) this.split();
    return this.queryText;
  }

  private split(): void {
    const t = this.h2.head.path;
    const q = t.indexOf('?');
    this.pathText = q === -1 ? t : t.slice(0, q) || '/';
    this.queryText = q === -1 ? '' : t.slice(q + 1);
  }

  searchParams(): URLSearchParams {
    return new URLSearchParams(this.query);
  }

  header(name: string): string | undefined {
    const head = this.live().head;
    const names = head.names;
    const lower = lowerCase(name);
    for (let k = 0; k < names.length; k++) if (names[k] === lower) return head.values[k];
    return undefined;
  }

  headerValues(name: string): string[] {
    const head = this.live().head;
    const lower = lowerCase(name);
    const out: string[] = [];
    for (let k = 0; k < head.names.length; k++) if (head.names[k] === lower) out.push(head.values[k]!);
    return out;
  }

  headerPairs(): [string, string][] {
    const head = this.live().head;
    return head.names.map((n, k) => [n, head.values[k]!]);
  }

  get headerCount(): number {
    return this.live().head.names.length;
  }

  fieldName(k: number): string {
    return this.live().head.names[k]!;
  }

  fieldNameIs(k: number, lower: string): boolean {
    return this.live().head.names[k] === lower;
  }

  fieldNameLength(k: number): number {
    return this.live().head.names[k]!.length;
  }

  fieldSize(k: number): number {
    const head = this.live().head;
    // Values are octets (latin1 strings): one byte a character.
    return head.names[k]!.length + head.values[k]!.length + 4;
  }

  copyField(k: number, out: Buffer, p: number): number {
    const head = this.live().head;
    p += writeLatin1(out, head.names[k]!, p);
    out[p++] = 0x3a;
    out[p++] = 0x20;
    p += writeLatin1(out, head.values[k]!, p);
    out[p++] = 0x0d;
    out[p++] = 0x0a;
    return p;
  }

  fieldValue(k: number): string {
    return this.live().head.values[k]!;
  }

  get keepAlive(): boolean {
    return !this.h2.session.goingAway;
  }

  get upgrade(): string | undefined {
    return undefined;
  }

  get contentLength(): number {
    return this.live().head.contentLength;
  }

  get hasBody(): boolean {
    const s = this.live();
    return !s.bodyEnded || s.received > 0;
  }

  get trailers(): readonly [string, string][] {
    return this.live().trailers;
  }

  get remoteAddress(): string {
    return this.h2.session.conn.remoteAddress;
  }

  get secure(): boolean {
    return this.h2.session.conn.secure;
  }

  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      const reason = this.abortReason ?? this.h2.abortedWith;
      if (reason !== null) this.controller.abort(reason);
    }
    return this.controller.signal;
  }

  /** @internal The request is over before its handler answered it (`reason` says why). */
  aborted(reason: HttpError): void {
    this.abortReason ??= reason;
    this.controller?.abort(reason);
  }

  body(limit?: number): Promise<Buffer> {
    const s = this.live();
    return s.collectBody(limit ?? s.session.core.maxBodySize);
  }

  async text(limit?: number): Promise<string> {
    return (await this.body(limit)).toString('utf8');
  }

  async json<T = unknown>(limit?: number): Promise<T> {
    return parseJsonBody<T>(await this.body(limit));
  }

  pipe(consumer: BodyConsumer): void {
    this.live().attachBody(consumer);
  }

  onAbort(listener: () => void): void {
    this.live().abortListener = listener;
  }

  resumeBody(): void {
    this.h2.resumeBody();
  }

  stream(): Readable {
    return bodyStream(this);
  }
}

/** `name` in lower case, without a new string when it already is. */
function lowerCase(name: string): string {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return name.toLowerCase();
  }
  return name;
}
