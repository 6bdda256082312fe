/**
 * One HTTP/2 stream on the server: a request coming in (its body as DATA, flow-controlled by what the
 * handler consumed) and its response going out (HEADERS, then DATA within the peer's windows, queued while
 * they are closed). `state` is RFC 9113 §5.1's; the stream leaves its connection once both sides ended.
 */
import type { Conn } from '../../core/index.ts';
import { collectBody } from '../http1/body-reading.ts';
import type { BodyConsumer } from '../http1/index.ts';
import { HttpError } from '../http1/index.ts';
import type { Http2Connection } from './connection.ts';
import {
  type Http2RequestAbortMessage,
  type Http2RequestStartMessage,
  type Http2ResponseFinishMessage,
  http2Channels,
} from './diagnostics.ts';
import type { RequestHead } from './fields.ts';
import { FlowWindow } from './flow.ts';
import { Http2Request } from './request.ts';
import { Http2Response } from './response.ts';
import { CLOSED, HALF_CLOSED_LOCAL, HALF_CLOSED_REMOTE, OPEN } from './stream-state.ts';

const EMPTY_TRAILERS: readonly [string, string][] = [];

interface DrainWaiter {
  resolve(): void;
  reject(err: Error): void;
}

/** A stream's probes (its private `probed`): nothing published yet; request:start published; its end published. */
const PROBE_NONE = 0;
const PROBE_STARTED = 1;
const PROBE_ENDED = 2;

/** Why a request was aborted or a write refused: the client reset the stream or closed the connection. */
export function streamClosedError(what = 'the client closed the stream'): HttpError {
  return new HttpError(499, what, 'ERR_HTTP_CLOSED');
}

export class Http2Stream {
  readonly id: number;
  readonly session: Http2Connection;
  /** RFC 9113 §5.1 state (stream-state.ts). */
  state: number;
  readonly sendWindow: FlowWindow;
  readonly recvWindow: FlowWindow;
  readonly head: RequestHead;
  readonly req: Http2Request;
  readonly res: Http2Response;
  /** When the head arrived (`performance.now()` with access logs, else the loop clock). */
  readonly startedAt: number;
  /** Loop clock at the stream's last frame either way (idle-stream timeout). */
  lastActive: number;
  /** Loop clock since which output has waited for a window (0: not blocked). */
  blockedSince = 0;
  /** Listed in the connection's blocked list. */
  queued = false;

  // ---- request body --------------------------------------------------------------------------------
  /** Body bytes received so far (padding excluded). */
  received = 0;
  /** END_STREAM arrived (or the stream was reset). */
  bodyEnded = false;
  trailers: readonly [string, string][] = EMPTY_TRAILERS;
  private consumer: BodyConsumer | null = null;
  /** A consumer is attached or was (the body can be read once). */
  private bodyTaken = false;
  /** The consumer asked to wait: DATA is queued and the window not given back. */
  private bodyPaused = false;
  /** Copies of DATA that arrived with nobody to take it (bounded by the stream's receive window). */
  private inQueue: Buffer[] | null = null;

  // ---- response ------------------------------------------------------------------------------------
  readonly resNames: string[] = [];
  readonly resValues: string[] = [];
  /** Response trailers to send with the end. */
  resTrailers: [string, string][] | null = null;
  /** Output waiting for a flow-control window, copied, in order. */
  outQueue: Buffer[] | null = null;
  outBytes = 0;
  /** END_STREAM goes out after the queue. */
  outEnd = false;
  private drainWaiters: DrainWaiter[] | null = null;

  // ---- aborts --------------------------------------------------------------------------------------
  /** The stream was reset or the connection lost before the response ended. */
  abortedWith: HttpError | null = null;
  abortListener: (() => void) | null = null;
  /** The handler's promise is pending (the stream counts against concurrency while it is, even reset). */
  handlerBusy = false;
  /** Reset while its handler runs: it holds a concurrency slot until the handler settles. */
  zombie = false;
  /** The handler was told the request is over (listener and signal), once. */
  private abandoned = false;
  /** Its probes: PROBE_NONE, PROBE_STARTED (request:start published), PROBE_ENDED (finish or abort). */
  private probed = PROBE_NONE;

  constructor(
    session: Http2Connection,
    id: number,
    head: RequestHead,
    endStream: boolean,
    startedAt: number,
  ) {
    this.session = session;
    this.id = id;
    this.head = head;
    this.state = endStream ? HALF_CLOSED_REMOTE : OPEN;
    this.bodyEnded = endStream;
    const local = session.settings;
    this.sendWindow = new FlowWindow(id, session.peer.initialWindowSize, local.initialWindowSize);
    // Until the client has our SETTINGS it may use the default window (RFC 9113 §6.9.2): a smaller one we
    // advertised binds streams opened after the acknowledgement.
    this.recvWindow = new FlowWindow(
      id,
      0,
      session.settingsAcked ? local.initialWindowSize : Math.max(local.initialWindowSize, 65_535),
    );
    this.startedAt = startedAt;
    this.lastActive = session.conn.loop.clock;
    this.req = new Http2Request(this);
    this.res = new Http2Response(this, head.method === 'HEAD');
  }

  /** The connection (for the response hook's `ExchangeInfo`). */
  get conn(): Conn {
    return this.session.conn;
  }

  /** Whether the stream still belongs to its connection (not closed, not reset). */
  get live(): boolean {
    return this.state !== CLOSED;
  }

  // ---- request body --------------------------------------------------------------------------------

  /** DATA payload bytes for this stream (a view valid during the call). */
  onData(view: Buffer): void {
    this.received += view.length;
    if (view.length === 0) return;
    const consumer = this.consumer;
    if (consumer !== null && !this.bodyPaused && this.inQueue === null) {
      this.session.consumed(this, view.length);
      this.deliver(consumer, view);
      return;
    }
    if (consumer === null && this.bodyTaken) {
      // Nobody will read it (the response ended first): the window is given back at once.
      this.session.consumed(this, view.length);
      return;
    }
    this.inQueue ??= [];
    this.inQueue.push(Buffer.from(view));
  }

  /** END_STREAM arrived (with `trailers` when a trailer block carried it). */
  onBodyEnd(trailers: readonly [string, string][]): void {
    this.bodyEnded = true;
    if (trailers.length > 0) this.trailers = trailers;
    if (this.consumer !== null && this.inQueue === null && !this.bodyPaused) this.endConsumer();
  }

  /** The body cannot complete (a reset, a lost connection, a timeout, a limit): the rest is dropped. */
  bodyFailed(err: Error): void {
    this.bodyTaken = true;
    const queued = this.inQueue;
    this.inQueue = null;
    if (queued !== null && this.live) for (const chunk of queued) this.session.consumed(this, chunk.length);
    const consumer = this.consumer;
    this.consumer = null;
    consumer?.error(err);
  }

  attachBody(consumer: BodyConsumer): void {
    if (this.abortedWith !== null) {
      // Reset or lost first: the reader hears why (a cancelled upload is not a handler's mistake).
      consumer.error(this.abortedWith);
      return;
    }
    if (this.bodyTaken)
      throw new HttpError(500, 'the request body is already being read', 'ERR_HTTP_BODY_CONSUMED');
    this.bodyTaken = true;
    this.consumer = consumer;
    if (this.head.expectContinue && !this.bodyEnded && !this.res.headersSent) this.session.sendContinue(this);
    this.flushBody();
  }

  /**
   * Whether the body waits on our side (a paused reader, or bytes queued for a reader not attached yet):
   * the client is then not to blame for a body that stops arriving.
   */
  get waitsForReader(): boolean {
    return this.bodyPaused || (this.consumer === null && !this.bodyTaken && this.inQueue !== null);
  }

  /** Calls the consumer; a throw fails this stream only (as a handler's would). */
  private deliver(consumer: BodyConsumer, chunk: Buffer): void {
    let more: boolean | void;
    try {
      more = consumer.data(chunk);
    } catch (err) {
      this.consumer = null;
      this.session.consumerFailed(this, err);
      return;
    }
    if (more === false) this.bodyPaused = true;
  }

  resumeBody(): void {
    if (!this.bodyPaused) return;
    this.bodyPaused = false;
    this.flushBody();
  }

  private flushBody(): void {
    const queue = this.inQueue;
    if (queue !== null) {
      while (queue.length > 0 && this.consumer !== null && !this.bodyPaused) {
        const chunk = queue.shift()!;
        this.session.consumed(this, chunk.length);
        this.deliver(this.consumer, chunk);
      }
      if (queue.length > 0) return;
      this.inQueue = null;
    }
    if (this.bodyEnded && this.consumer !== null && !this.bodyPaused) this.endConsumer();
  }

  private endConsumer(): void {
    const consumer = this.consumer!;
    this.consumer = null;
    try {
      if (this.abortedWith !== null) consumer.error(this.abortedWith);
      else consumer.end(this.trailers);
    } catch (err) {
      this.session.consumerFailed(this, err);
    }
  }

  /** The response ended while the body still came: whoever reads it hears so, the rest is dropped. */
  dropBody(): void {
    this.bodyTaken = true;
    const queued = this.inQueue;
    this.inQueue = null;
    if (queued !== null) for (const chunk of queued) this.session.consumed(this, chunk.length);
    const consumer = this.consumer;
    this.consumer = null;
    consumer?.error(
      new HttpError(500, 'the response ended before the request body was read', 'ERR_HTTP_RESPONSE_ENDED'),
    );
  }

  /** Octets of body queued for the handler (they hold the receive window). */
  get queuedBody(): number {
    let n = 0;
    if (this.inQueue !== null) for (const c of this.inQueue) n += c.length;
    return n;
  }

  /** The whole body, bounded by `limit`. */
  collectBody(limit: number): Promise<Buffer> {
    const declared = this.head.contentLength;
    if (declared > limit) return Promise.reject(new HttpError(413, 'body too large'));
    return collectBody((consumer) => this.attachBody(consumer), limit);
  }

  // ---- response ------------------------------------------------------------------------------------

  /** Queues a copy of `chunk[from..]` for when a window opens. */
  enqueue(chunk: Uint8Array, from: number): void {
    const copy = Buffer.from(chunk.subarray(from));
    this.outQueue ??= [];
    this.outQueue.push(copy);
    this.outBytes += copy.length;
  }

  /** We sent END_STREAM (or a reset): the state moves on. */
  sentEnd(): void {
    this.state = this.state === OPEN ? HALF_CLOSED_LOCAL : CLOSED;
  }

  /** Waits for the queue to empty and the connection to take more. */
  drain(): Promise<void> {
    if (this.abortedWith !== null) return Promise.reject(this.abortedWith);
    return new Promise((resolve, reject) => {
      this.drainWaiters ??= [];
      this.drainWaiters.push({ resolve, reject });
      this.session.watchDrain(this);
    });
  }

  get waitsForDrain(): boolean {
    return this.drainWaiters !== null;
  }

  settleDrain(err: Error | null): void {
    const waiters = this.drainWaiters;
    if (waiters === null) return;
    this.drainWaiters = null;
    for (const w of waiters) {
      if (err === null) w.resolve();
      else w.reject(err);
    }
  }

  // ---- aborts --------------------------------------------------------------------------------------

  /** The stream is over before its response ended: tell the handler (listener, signal, body, drain). */
  abort(reason: HttpError): void {
    if (this.abortedWith !== null) return;
    this.abortedWith = reason;
    this.bodyFailed(reason);
    this.settleDrain(reason);
    this.outQueue = null;
    this.outBytes = 0;
    if (this.res.finished) {
      this.probeAbort(reason); // ended, but its END_STREAM had not gone out: the answer was not whole
      return;
    }
    this.tellAbandoned(reason);
  }

  // ---- probes: PROBE_NONE -> PROBE_STARTED (the handler runs) -> PROBE_ENDED (a finish or an abort) ----

  /** Publishes `request:start`: the handler is about to run. */
  probeStart(): void {
    this.probed = PROBE_STARTED;
    if (http2Channels.requestStart.hasSubscribers)
      http2Channels.requestStart.publish({
        request: this.req,
        response: this.res,
        stream: this.id,
      } satisfies Http2RequestStartMessage);
  }

  /** Publishes `response:finish` for a started stream whose END_STREAM just went out. */
  probeFinish(): void {
    if (this.probed !== PROBE_STARTED) return;
    this.probed = PROBE_ENDED;
    if (http2Channels.responseFinish.hasSubscribers)
      http2Channels.responseFinish.publish({
        request: this.req,
        response: this.res,
        stream: this.id,
      } satisfies Http2ResponseFinishMessage);
  }

  /** Publishes `request:abort` for a started stream whose end was not published yet. */
  private probeAbort(reason: HttpError): void {
    if (this.probed !== PROBE_STARTED) return;
    this.probed = PROBE_ENDED;
    if (http2Channels.requestAbort.hasSubscribers)
      http2Channels.requestAbort.publish({
        request: this.req,
        response: this.res,
        stream: this.id,
        error: reason,
      } satisfies Http2RequestAbortMessage);
  }

  /**
   * Runs the abort listener and aborts the request's signal, once (a reset, or an answer in its place:
   * `own`, when the server answers, so the request ends with that answer's finish, not an abort).
   */
  tellAbandoned(reason: HttpError, own = false): void {
    if (this.abandoned) return;
    this.abandoned = true;
    if (!own) this.probeAbort(reason);
    const listener = this.abortListener;
    this.abortListener = null;
    if (listener !== null) {
      try {
        listener();
      } catch (err) {
        this.session.conn.loop.log.error('http2 onAbort listener threw', { stream: this.id, error: err });
      }
    }
    this.req.aborted(reason);
  }
}
