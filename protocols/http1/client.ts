import type { Conn, EventHandler } from '../../core/index.ts';
import {
  BODY_CHUNKED,
  BODY_LENGTH,
  BODY_NONE,
  BODY_UNTIL_CLOSE,
  BodyDecoder,
  type BodySink,
} from './body.ts';
import { TARGET, TCHAR } from './chars.ts';
import { HttpError } from './errors.ts';
import { HEAD_ERROR, HeadParser, NEED_MORE } from './head.ts';

/** Receives one response. Views passed to `onBody` are valid only during the call. */
export interface ResponseSink {
  /**
   * The final response head arrived (1xx interim responses are skipped). Read its headers during this call:
   * they are views of the read buffer.
   */
  onHead(response: ClientResponse): void;
  /** Body bytes; return false to stop reading the upstream until `resumeResponse()`. */
  onBody(chunk: Buffer): boolean | void;
  /** The response is complete. */
  onEnd(trailers: readonly [string, string][]): void;
  /** The exchange failed (connection error, bad response, or a timeout); called at most once. */
  onError(err: Error): void;
  /**
   * The upstream switched protocols (101) for a request sent with `upgrade`: the exchange is over, the
   * connection is no longer HTTP (never reused) and is the sink's to take with `conn.setHandler`; bytes
   * that followed the head stay buffered for the new handler. Read the head during this call. Without this
   * method a 101 fails the exchange.
   */
  onUpgrade?(response: ClientResponse): void;
}

/** A response head, read in place: header strings are made only when asked for. */
export interface ClientResponse {
  readonly status: number;
  /** Number of header fields. */
  readonly headerCount: number;
  /** Content-Length, or -1. */
  readonly contentLength: number;
  /** Name of field `k` as sent. */
  fieldName(k: number): string;
  /** Value of field `k`. */
  fieldValue(k: number): string;
  /** First value of `name` (case-insensitive). */
  header(name: string): string | undefined;
  /** Whether field `k`'s name is `lower`, compared in place. */
  fieldNameIs(k: number, lower: string): boolean;
  /** Length of field `k`'s name. */
  fieldNameLength(k: number): number;
  /** Bytes `copyField` writes. */
  fieldSize(k: number): number;
  /** Copies field `k` as received (`name: value\r\n`) into `out` at `p`; returns the end. */
  copyField(k: number, out: Buffer, p: number): number;
}

/** Header lines a request carries as bytes (a proxy's copy of its client's fields, already checked). */
export interface RawRequestHeaders {
  /** An upper bound of the bytes `copy` writes. */
  readonly size: number;
  /** Writes the lines (each ending in CRLF) into `buf` at `p`; returns the end. */
  copy(buf: Buffer, p: number): number;
}

/** How a request's body is framed: a Content-Length (0 for none), chunked, or no body and no length. */
export type RequestFraming = number | 'chunked' | 'none';

/** A request to send: the codec writes its line, `host`, the given fields and the framing. */
export interface OutgoingRequest {
  /** A token (`GET`, `POST`, ...). */
  readonly method: string;
  /** The request-target, origin-form (`/path?query`): visible ASCII only. */
  readonly target: string;
  /** The Host field's value. */
  readonly host: string;
  /** Fields as name/value pairs, each checked (no CR, LF or NUL can reach the head). */
  readonly headers?: readonly (readonly [string, string])[];
  /** Fields as bytes, copied verbatim after `headers`. */
  readonly raw?: RawRequestHeaders;
  readonly framing: RequestFraming;
  /**
   * Asks to switch protocols: `connection: upgrade` and `upgrade: <this token>` are written, and a 101 goes
   * to the sink's `onUpgrade`. The request carries no body (`framing` must be `none`).
   */
  readonly upgrade?: string;
}

/** Whether `s` is a token (a method or a field name). */
function token(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f || TCHAR[c] !== 1) return false;
  }
  return true;
}

/** Writes field value `s` at `p` if every character may stand in one; -1 otherwise. */
function putValue(buf: Buffer, p: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || (c < 0x20 && c !== 0x09) || c === 0x7f) return -1;
    buf[p++] = c;
  }
  return p;
}

/** Whether `s` is a value {@link putValue} writes (no CR, LF, NUL or other controls but tab). */
function validValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || (c < 0x20 && c !== 0x09) || c === 0x7f) return false;
  }
  return true;
}

/** Writes latin1 text known to be safe (checked before, or a constant). */
function putText(buf: Buffer, p: number, text: string): number {
  for (let i = 0; i < text.length; i++) buf[p++] = text.charCodeAt(i);
  return p;
}

const HEX_DIGITS = '0123456789abcdef';

function invalidRequest(what: string): HttpError {
  return new HttpError(500, `invalid request to send: ${what}`, 'ERR_HTTP_INVALID_REQUEST');
}

/** The `timeout` parameter of a Keep-Alive field (`timeout=5, max=100`) in milliseconds, or -1 when absent. */
function keepAliveMs(value: string): number {
  const m = /(?:^|[\s,;])timeout\s*=\s*(\d{1,6})(?:$|[\s,;])/i.exec(value);
  return m === null ? -1 : Number(m[1]) * 1000;
}

/** Limits for parsing responses from upstreams. */
const RESPONSE_LIMITS = {
  maxStartLine: 8 * 1024,
  maxHeaderBytes: 64 * 1024,
  maxHeaders: 256,
  requireHost: false,
};
const BODY_LIMITS = {
  maxBodySize: Number.MAX_SAFE_INTEGER,
  maxChunkLine: 4 * 1024,
  maxTrailerBytes: 64 * 1024,
  maxTrailers: 256,
};

const IDLE = 0;
const WAITING = 1; // request sent (or being sent), no final head yet
const RECEIVING = 2;

/**
 * One HTTP/1.1 client connection: sends a request whose head the caller serializes, parses the response
 * with the same strict parser the server uses, and says whether the connection can carry another request.
 * Attach it with {@link clientHandler} to a dialed `Conn` (the gateway's pools do).
 */
export class ClientConnection implements BodySink, ClientResponse {
  readonly conn: Conn<ClientConnection>;
  /** Free for a new request (keep-alive) after the last response. */
  reusable = true;
  /** Requests this connection has carried. */
  requests = 0;
  /**
   * A byte of the current exchange's response has arrived. A reused connection that fails before any did
   * was most likely closed by the upstream while idle (a race with its keep-alive timeout), not a failure
   * of the target: a proxy retries such a request on a fresh connection.
   */
  answered = false;
  /**
   * How long the upstream keeps this connection idle, from its last response's `Keep-Alive: timeout=N`
   * (milliseconds), or -1 when it did not say: a pool closes the connection before that.
   */
  keepAliveTimeout = -1;
  /** Free slot for whoever uses the connection now (the gateway's proxy keeps its call here). */
  poolData: unknown = undefined;

  private readonly head = new HeadParser('response', RESPONSE_LIMITS);
  private readonly body = new BodyDecoder(BODY_LIMITS);
  private sink: ResponseSink | null = null;
  private state = IDLE;
  private headRequest = false;
  /** The request in progress asked for an upgrade: a 101 ends the exchange with `onUpgrade`. */
  private upgradeRequest = false;
  /** The body being sent is chunked (the codec frames each piece). */
  private chunkedBody = false;
  private paused = false;
  private buf: Buffer = Buffer.alloc(0);
  /** Called when a request finished and the connection is idle again (or closed). */
  onIdle: ((c: ClientConnection) => void) | null = null;
  /** Called when the connection's outbound fell to the low-water mark (request body backpressure). */
  onWritable: ((c: ClientConnection) => void) | null = null;

  constructor(conn: Conn<ClientConnection>) {
    this.conn = conn;
    // An upstream may answer (say, 401) before it reads all of a large request: that answer must be read.
    conn.pauseOnBackpressure = false;
  }

  /** A request is in progress. */
  get busy(): boolean {
    return this.state !== IDLE;
  }

  /** Whether the connection is closing or closed (what the HTTP/2 client's streams say as `gone`). */
  get gone(): boolean {
    return this.conn.closed;
  }

  /** Arms the exchange's deadline (the connection's: one exchange at a time); 0 disarms. */
  setDeadline(ms: number): void {
    this.conn.setDeadline(ms);
  }

  /** Whether more request body may be written now; otherwise `onWritable` follows once it may. */
  whenWritable(): boolean {
    return this.conn.whenWritable();
  }

  /**
   * Starts a request: the caller has written (or now writes) the request head and body to `conn`; the response
   * goes to `sink`. `method` tells a HEAD request, whose response has no body.
   */
  begin(method: string, sink: ResponseSink): void {
    if (this.state !== IDLE) throw new HttpError(500, 'client connection busy', 'ERR_HTTP_CLIENT_BUSY');
    this.sink = sink;
    this.state = WAITING;
    this.headRequest = method === 'HEAD';
    this.upgradeRequest = false;
    this.answered = false;
    this.requests++;
    // A graceful stop waits for an exchange in progress instead of closing a quiet upstream connection.
    this.conn.busy = true;
  }

  /**
   * Sends a request (its line, Host, fields and framing, serialized into the connection's staging buffer in
   * one pass) and starts the exchange; the response goes to `sink`. A body follows with {@link writeBody}
   * and {@link endBody}. A method, target, field name or value that could break the head throws
   * `ERR_HTTP_INVALID_REQUEST` before anything is written.
   */
  request(req: OutgoingRequest, sink: ResponseSink): void {
    if (this.state !== IDLE) throw new HttpError(500, 'client connection busy', 'ERR_HTTP_CLIENT_BUSY');
    const { method, target, host, headers, raw, framing, upgrade } = req;
    if (!token(method)) throw invalidRequest(`method ${JSON.stringify(method)}`);
    if (upgrade !== undefined && (!token(upgrade) || framing !== 'none'))
      throw invalidRequest(`upgrade ${JSON.stringify(upgrade)} (a token, on a request without a body)`);
    if (target.length === 0) throw invalidRequest('empty target');
    for (let i = 0; i < target.length; i++) {
      const c = target.charCodeAt(i);
      if (c > 0xff || TARGET[c] !== 1) throw invalidRequest(`target ${JSON.stringify(target)}`);
    }
    let bound =
      method.length + target.length + host.length + 96 + (raw?.size ?? 0) + (upgrade?.length ?? -32) + 32;
    if (headers !== undefined) for (const [n, v] of headers) bound += n.length + v.length + 4;
    const conn = this.conn;
    const buf = conn.reserve(bound);
    let p = putText(buf, conn.reservedAt, method);
    buf[p++] = 0x20;
    p = putText(buf, p, target);
    p = putText(buf, p, ' HTTP/1.1\r\nhost: ');
    p = putValue(buf, p, host);
    if (p < 0) throw invalidRequest('Host value');
    buf[p++] = 0x0d;
    buf[p++] = 0x0a;
    if (headers !== undefined) {
      for (const [name, value] of headers) {
        if (!token(name)) throw invalidRequest(`field name ${JSON.stringify(name)}`);
        p = putText(buf, p, name);
        buf[p++] = 0x3a;
        buf[p++] = 0x20;
        p = putValue(buf, p, value);
        if (p < 0) throw invalidRequest(`value of ${name}`);
        buf[p++] = 0x0d;
        buf[p++] = 0x0a;
      }
    }
    if (raw !== undefined) p = raw.copy(buf, p);
    if (upgrade !== undefined) {
      p = putText(buf, p, 'connection: upgrade\r\nupgrade: ');
      p = putText(buf, p, upgrade);
      buf[p++] = 0x0d;
      buf[p++] = 0x0a;
    }
    this.chunkedBody = framing === 'chunked';
    if (framing === 'chunked') p = putText(buf, p, 'transfer-encoding: chunked\r\n');
    else if (typeof framing === 'number') {
      p = putText(buf, p, 'content-length: ');
      p = putText(buf, p, String(framing));
      buf[p++] = 0x0d;
      buf[p++] = 0x0a;
    }
    buf[p++] = 0x0d;
    buf[p++] = 0x0a;
    conn.commit(p);
    this.begin(method, sink);
    this.upgradeRequest = upgrade !== undefined;
  }

  /**
   * Sends a piece of the request body (framed as a chunk when the request is chunked). Returns false when
   * the connection's outbound bytes are above the high-water mark: wait for `onWritable`.
   */
  writeBody(chunk: Uint8Array): boolean {
    const conn = this.conn;
    if (conn.closed || chunk.byteLength === 0) return true;
    if (this.chunkedBody) {
      const buf = conn.reserve(16);
      let p = conn.reservedAt;
      let digits = 1;
      for (let m = chunk.byteLength; m >= 16; m = Math.floor(m / 16)) digits++;
      for (let i = digits - 1, m = chunk.byteLength; i >= 0; i--, m = Math.floor(m / 16))
        buf[p + i] = HEX_DIGITS.charCodeAt(m % 16);
      p += digits;
      buf[p++] = 0x0d;
      buf[p++] = 0x0a;
      conn.commit(p);
      conn.write(chunk);
      conn.writeLatin1('\r\n');
    } else {
      conn.write(chunk);
    }
    return conn.outboundBuffered < conn.loop.options.highWaterMark;
  }

  /**
   * Ends the request body: for a chunked request, the last chunk and `trailers` (each checked; a field that
   * could break the message throws `ERR_HTTP_INVALID_REQUEST` and nothing of the trailers is sent).
   */
  endBody(trailers: readonly (readonly [string, string])[] = []): void {
    if (!this.chunkedBody || this.conn.closed) return;
    // Checked before anything is written or the body counts as ended: a refused trailer leaves the body
    // open for an `endBody()` without them.
    for (const [name, value] of trailers) {
      if (!token(name)) throw invalidRequest(`trailer name ${JSON.stringify(name)}`);
      if (!validValue(value)) throw invalidRequest(`value of trailer ${name}`);
    }
    this.chunkedBody = false;
    let bound = 8;
    for (const [n, v] of trailers) bound += n.length + v.length + 4;
    const conn = this.conn;
    const buf = conn.reserve(bound);
    let p = putText(buf, conn.reservedAt, '0\r\n');
    for (const [name, value] of trailers) {
      if (!token(name)) throw invalidRequest(`trailer name ${JSON.stringify(name)}`);
      p = putText(buf, p, name);
      buf[p++] = 0x3a;
      buf[p++] = 0x20;
      p = putValue(buf, p, value);
      if (p < 0) throw invalidRequest(`value of trailer ${name}`);
      buf[p++] = 0x0d;
      buf[p++] = 0x0a;
    }
    buf[p++] = 0x0d;
    buf[p++] = 0x0a;
    conn.commit(p);
  }

  /** Resumes reading after `onBody` returned false. */
  resumeResponse(): void {
    if (!this.paused) return;
    this.paused = false;
    this.conn.resume();
    this.conn.wake();
  }

  /** Fails the exchange in progress and closes the connection. */
  abort(err: Error): void {
    this.reusable = false;
    const sink = this.sink;
    this.sink = null;
    this.state = IDLE;
    this.conn.busy = false;
    this.conn.destroy(err);
    sink?.onError(err);
  }

  // ---- ClientResponse -------------------------------------------------------------------------------

  get status(): number {
    return this.head.status;
  }
  get headerCount(): number {
    return this.head.fieldCount;
  }
  get contentLength(): number {
    return this.head.contentLength;
  }
  fieldName(k: number): string {
    return this.head.name(this.buf, k);
  }
  fieldValue(k: number): string {
    return this.head.value(this.buf, k);
  }
  header(name: string): string | undefined {
    const k = this.head.find(this.buf, name);
    return k === -1 ? undefined : this.head.value(this.buf, k);
  }
  fieldNameIs(k: number, lower: string): boolean {
    return this.head.nameIs(this.buf, k, lower);
  }
  fieldNameLength(k: number): number {
    return this.head.nameLength(k);
  }
  fieldSize(k: number): number {
    return this.head.fieldSize(k);
  }
  copyField(k: number, out: Buffer, p: number): number {
    return this.head.copyField(this.buf, k, out, p);
  }

  // ---- event handling (driven by clientHandler) ---------------------------------------------------------

  /** @internal */
  traffic(): void {
    const conn = this.conn;
    if (this.state === IDLE && conn.inboundBuffered > 0) {
      // Bytes nobody asked for: answering them to the next request would cross clients. Never reuse.
      this.reusable = false;
      conn.destroy();
      return;
    }
    while (this.state !== IDLE && !this.paused && !conn.closed) {
      const avail = conn.inboundBuffered;
      if (avail === 0) return;
      this.answered = true;
      const buf = conn.buffer;
      const off = conn.offset;
      if (this.state === WAITING) {
        const n = this.head.parse(buf, off, off + avail);
        if (n === NEED_MORE) return;
        if (n === HEAD_ERROR) {
          this.fail(
            new HttpError(
              502,
              `invalid response from upstream: ${this.head.errorReason}`,
              'ERR_HTTP_BAD_RESPONSE',
            ),
          );
          return;
        }
        conn.discard(n);
        const status = this.head.status;
        if (status < 200) {
          if (status === 101) {
            const sink = this.sink!;
            if (!this.upgradeRequest || sink.onUpgrade === undefined) {
              this.fail(new HttpError(502, 'upstream switched protocols', 'ERR_HTTP_BAD_RESPONSE'));
              return;
            }
            // The exchange ends here; the connection is the sink's, never this codec's again.
            this.buf = buf;
            this.reusable = false;
            this.sink = null;
            this.state = IDLE;
            this.upgradeRequest = false;
            conn.busy = false;
            sink.onUpgrade(this);
            return;
          }
          continue; // 100 Continue and other interim responses
        }
        this.buf = buf;
        this.state = RECEIVING;
        const head = this.head;
        let mode = BODY_NONE;
        if (this.headRequest || status === 204 || status === 304) mode = BODY_NONE;
        else if (head.chunked) mode = BODY_CHUNKED;
        else if (head.contentLength >= 0) mode = BODY_LENGTH;
        else mode = BODY_UNTIL_CLOSE;
        this.body.begin(mode, Math.max(head.contentLength, 0));
        if (
          mode === BODY_UNTIL_CLOSE ||
          head.connectionClose ||
          (head.minor === 0 && !head.connectionKeepAlive)
        ) {
          this.reusable = false;
        }
        const ka = head.find(buf, 'keep-alive');
        if (ka !== -1) this.keepAliveTimeout = keepAliveMs(head.value(buf, ka));
        this.sink!.onHead(this);
        if (this.state !== RECEIVING) return; // the sink aborted
        if (this.body.done) {
          this.complete();
          continue;
        }
        continue;
      }
      // RECEIVING
      const used = this.body.decode(buf, off, off + avail, this);
      if (used < 0) {
        this.fail(
          new HttpError(
            502,
            `invalid response body from upstream: ${this.body.errorReason}`,
            'ERR_HTTP_BAD_RESPONSE',
          ),
        );
        return;
      }
      conn.discard(used);
      if (this.body.done) this.complete();
      else if (used === 0) return;
    }
  }

  /** BodySink */
  onBody(buf: Buffer, start: number, end: number): void {
    if (this.sink?.onBody(buf.subarray(start, end)) === false && !this.paused) {
      this.paused = true;
      this.conn.pause();
    }
  }

  private complete(): void {
    const sink = this.sink;
    const conn = this.conn;
    this.sink = null;
    this.state = IDLE;
    conn.busy = false;
    // More bytes than the response framed (an upstream answering twice, a body after 204/304/HEAD) would be
    // read as the next request's response, for another client: such a connection is never reused.
    if (conn.inboundBuffered > 0) this.reusable = false;
    if (this.paused) {
      this.paused = false;
      conn.resume();
    }
    sink?.onEnd(this.body.trailers);
    if (!this.reusable) conn.close();
    else this.onIdle?.(this);
  }

  private fail(err: Error): void {
    this.abort(err);
  }

  /** @internal The upstream closed its side. */
  eof(): void {
    if (this.state === RECEIVING && this.body.finish()) {
      this.reusable = false;
      this.complete();
      return;
    }
    this.reusable = false;
    if (this.state !== IDLE)
      this.fail(new HttpError(502, 'upstream closed the connection early', 'ERR_HTTP_UPSTREAM_CLOSED'));
    else this.conn.close();
  }

  /** @internal The connection closed. */
  closed(err: Error | undefined): void {
    this.reusable = false;
    this.conn.busy = false;
    if (this.state !== IDLE) {
      const sink = this.sink;
      this.sink = null;
      this.state = IDLE;
      sink?.onError(err ?? new HttpError(502, 'upstream connection closed', 'ERR_HTTP_UPSTREAM_CLOSED'));
    }
    this.onIdle?.(this);
  }
}

/**
 * The engine handler for dialed upstream connections carrying a {@link ClientConnection} in `context`.
 * `onOpen` is told when the dial completed; `onClose` when it failed or the connection ended.
 */
export function clientHandler(hooks: {
  onOpen?(client: ClientConnection): void;
  onClose?(client: ClientConnection, err: Error | undefined): void;
}): EventHandler<ClientConnection> {
  return {
    onOpen(conn) {
      hooks.onOpen?.(conn.context!);
    },
    onTraffic(conn) {
      conn.context!.traffic();
    },
    onEof(conn) {
      conn.context!.eof();
    },
    onWritable(conn) {
      const c = conn.context!;
      c.onWritable?.(c);
    },
    onClose(conn, err) {
      const c = conn.context!;
      c.closed(err);
      hooks.onClose?.(c, err);
    },
  };
}
