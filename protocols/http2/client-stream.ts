/**
 * One request/response on an HTTP/2 client connection (see `client.ts`): what a proxy holds while the
 * exchange runs, the counterpart of an HTTP/1.1 `ClientConnection` carrying one request. Its state and
 * windows are the connection's to move; its methods hand over to it.
 */
import type { ClientResponse, OutgoingRequest, ResponseSink } from '../http1/index.ts';
import type { Http2ClientConnection } from './client.ts';
import { FlowWindow } from './flow.ts';

/** Our receive window per stream (its SETTINGS_INITIAL_WINDOW_SIZE). */
export const STREAM_WINDOW = 1024 * 1024;

/** The window of a stream not started (never used: a stream gets its own when its request goes). */
const NO_WINDOW = new FlowWindow(0, 0, 0);

const EMPTY = Buffer.alloc(0);

// A stream's states, client side.
export const RESERVED = -1; // a slot taken on the connection, no request sent yet
export const SENDING = 0; // request body still going out
export const WAITING = 1; // request sent whole, no response head yet
export const RECEIVING = 2; // response head in, body coming
export const DONE = 3;

/**
 * One request/response on an {@link Http2ClientConnection}: what the proxy holds while the exchange runs
 * (the counterpart of an HTTP/1.1 `ClientConnection` carrying one request).
 */
export class Http2ClientStream implements ClientResponse {
  /** The stream id (0 until the request is sent: ids go out in the order requests do). */
  id = 0;
  readonly session: Http2ClientConnection;
  /** Free slot for the caller (the gateway's proxy keeps its call here). */
  poolData: unknown = undefined;
  /** Called when a body write held back by a window or the socket can go on. */
  onWritable: ((s: Http2ClientStream) => void) | null = null;
  /** Whether a frame of the response has arrived (a failure before that may be retried). */
  answered = false;
  /** Always true: a stream is never reused (the connection is, by the pool). */
  reusable = true;
  /** @internal */ state = RESERVED;
  /** @internal Made when the request is sent (the windows belong to its id). */
  sendWindow: FlowWindow = NO_WINDOW;
  /** @internal */ recvWindow: FlowWindow = NO_WINDOW;
  /** @internal */ sink: ResponseSink | null = null;
  /** @internal Body bytes waiting for a window, copied, and whether END_STREAM (with trailers) follows. */
  outQueue: Buffer[] | null = null;
  outBytes = 0;
  outEnd = false;
  outTrailers: readonly (readonly [string, string])[] | null = null;
  /** @internal The response body is paused by the sink: DATA is queued and the window held. */
  paused = false;
  inQueue: Buffer[] | null = null;
  /** The response ended while paused: its trailers wait with the queued body. */
  inEnded = false;
  inTrailers: [string, string][] = [];
  /** @internal END_STREAM went out on the request (or the server said it needs no more). */
  reqEnded = false;
  /** @internal Response body octets received (checked against its content-length). */
  received = 0;
  /** @internal Loop time this stream's deadline passes (0: none). */
  deadlineAt = 0;
  /** @internal */ headRequest = false;
  /** @internal The scheme `:scheme` names. */
  readonly scheme: 'http' | 'https';
  private names: string[] = [];
  private values: string[] = [];
  private statusCode = 0;
  private length = -1;

  /** @internal Made by {@link Http2ClientConnection.reserve}. */
  constructor(session: Http2ClientConnection, scheme: 'http' | 'https') {
    this.session = session;
    this.scheme = scheme;
  }

  /**
   * Sends the request on this stream: `req.target` is `:path`, `req.host` `:authority`; fields (pairs and
   * raw lines) lose their connection-specific ones. The body follows with `writeBody`/`endBody` unless
   * `framing` is `none` or 0 (END_STREAM then goes with the head). The response goes to `sink`.
   */
  request(req: OutgoingRequest, sink: ResponseSink): void {
    this.session.start(this, req, sink);
  }

  /** Whether the exchange is over or its connection gone. */
  get gone(): boolean {
    return this.state === DONE || this.session.conn.closed;
  }

  /** Arms this exchange's deadline `ms` from now (0 disarms); when it passes the sink gets `ERR_NETLOOM_DEADLINE`. */
  setDeadline(ms: number): void {
    this.deadlineAt = ms > 0 ? this.session.conn.loop.now() + ms : 0;
    if (ms > 0) this.session.armDeadline(this.deadlineAt);
  }

  /** Request body bytes; false when they wait for a window or the socket (then `onWritable` follows). */
  writeBody(chunk: Uint8Array): boolean {
    return this.session.sendBody(this, chunk, false, null);
  }

  /** Ends the request body, with trailers if any. */
  endBody(trailers: readonly (readonly [string, string])[] = []): void {
    this.session.sendBody(this, EMPTY, true, trailers.length > 0 ? trailers : null);
  }

  /** Whether more body may be written now; otherwise `onWritable` is called once it may. */
  whenWritable(): boolean {
    if (this.outBytes > 0) return false;
    return this.session.conn.whenWritable();
  }

  /** Resumes reading after the sink's `onBody` returned false. */
  resumeResponse(): void {
    this.session.resumeStream(this);
  }

  /** Abandons the exchange: RST_STREAM CANCEL; the sink hears `err` unless it ended. */
  abort(err: Error): void {
    this.session.cancel(this, err);
  }

  // ---- ClientResponse -----------------------------------------------------------------------------------

  /** @internal The response head, decoded. */
  setHead(status: number, names: string[], values: string[], length: number): void {
    this.statusCode = status;
    this.names = names;
    this.values = values;
    this.length = length;
  }
  get status(): number {
    return this.statusCode;
  }
  get headerCount(): number {
    return this.names.length;
  }
  get contentLength(): number {
    return this.length;
  }
  fieldName(k: number): string {
    return this.names[k]!;
  }
  fieldValue(k: number): string {
    return this.values[k]!;
  }
  header(name: string): string | undefined {
    const lower = name.toLowerCase();
    const k = this.names.indexOf(lower);
    return k === -1 ? undefined : this.values[k];
  }
  fieldNameIs(k: number, lower: string): boolean {
    return this.names[k] === lower;
  }
  fieldNameLength(k: number): number {
    return this.names[k]!.length;
  }
  fieldSize(k: number): number {
    return this.names[k]!.length + this.values[k]!.length + 4;
  }
  copyField(k: number, out: Buffer, p: number): number {
    p += out.write(this.names[k]!, p, 'latin1');
    out[p++] = 0x3a;
    out[p++] = 0x20;
    p += out.write(this.values[k]!, p, 'latin1');
    out[p++] = 0x0d;
    out[p++] = 0x0a;
    return p;
  }
}
