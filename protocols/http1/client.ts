import type { Conn, EventHandler } from '../../core/index.ts';
import {
  BODY_CHUNKED,
  BODY_LENGTH,
  BODY_NONE,
  BODY_UNTIL_CLOSE,
  BodyDecoder,
  type BodySink,
} from './body.ts';
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
  /** Free slot for whoever uses the connection now (the gateway's proxy keeps its call here). */
  poolData: unknown = undefined;

  private readonly head = new HeadParser('response', RESPONSE_LIMITS);
  private readonly body = new BodyDecoder(BODY_LIMITS);
  private sink: ResponseSink | null = null;
  private state = IDLE;
  private headRequest = false;
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

  /**
   * Starts a request: the caller has written (or now writes) the request head and body to `conn`; the response
   * goes to `sink`. `method` tells a HEAD request, whose response has no body.
   */
  begin(method: string, sink: ResponseSink): void {
    if (this.state !== IDLE) throw new HttpError(500, 'client connection busy', 'ERR_HTTP_CLIENT_BUSY');
    this.sink = sink;
    this.state = WAITING;
    this.headRequest = method === 'HEAD';
    this.requests++;
    // A graceful stop waits for an exchange in progress instead of closing a quiet upstream connection.
    this.conn.busy = true;
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
            this.fail(new HttpError(502, 'upstream switched protocols', 'ERR_HTTP_BAD_RESPONSE'));
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
