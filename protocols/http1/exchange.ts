import {
  type Conn,
  defineMetric,
  type EventHandler,
  type EventLoop,
  type MetricSeries,
} from '../../core/index.ts';
import type { BodyConsumer, ExchangeInfo } from './api.ts';
import { BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BodyDecoder, type BodySink } from './body.ts';
import { collectBody } from './body-reading.ts';
import {
  http1Channels,
  type RequestAbortMessage,
  type RequestStartMessage,
  type ResponseFinishMessage,
} from './diagnostics.ts';
import { HttpError } from './errors.ts';
import { HEAD_ERROR, HeadParser, NEED_MORE } from './head.ts';
import { closedError, Http1Request } from './request.ts';
import { Http1Response } from './response.ts';
import type { ServerCore } from './server.ts';
import { currentDateLine, STATUS_TEXT, statusLine } from './status.ts';

// The exchange's states.
/** No request: heads are parsed as bytes come. */
const IDLE = 0;
/** A request whose body is still arriving; its response has not ended. */
const BODY = 1;
/** The body is complete (or there is none); waiting for the response to end. */
const RESPONDING = 2;
/** The response ended first: the rest of a small body is read and dropped, then the next request. */
const DISCARDING = 3;
/** The connection left HTTP (`res.upgrade`). */
const UPGRADED = 4;
/** The connection is closing or closed. */
const CLOSED = 5;

// Who takes the body in state BODY.
const READER_NONE = 0; // nobody yet: bytes wait in the connection's buffer
const READER_CONSUMER = 1;

// Why reading is paused (bits).
/** The body's reader asked to wait, or nobody reads it yet and the buffer is full. */
const PAUSE_BODY = 1;
/** Bytes of later requests pile up while one is answered. */
const PAUSE_PIPELINE = 2;

// Which deadline is armed on the connection.
const TIMER_NONE = 0;
const TIMER_IDLE = 1;
const TIMER_HEADERS = 2;
const TIMER_BODY = 3;

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
const EMPTY = Buffer.alloc(0);
/** A body the handler never read is discarded up to this size to keep the connection; beyond, we close. */
const MAX_DISCARD = 256 * 1024;

interface DrainWaiter {
  resolve(): void;
  reject(err: Error): void;
}

/**
 * One HTTP/1.1 connection's state machine while it carries a request (an explicit `state`, see above):
 * parse a head, run the handler, feed the body to whoever reads it (or discard it), wait for the response to
 * end, then the next request. Requests are served one at a time, so pipelined responses leave in request
 * order; bytes of later requests wait in the connection's buffer (reading pauses if they pile up).
 *
 * An idle keep-alive connection holds no exchange: the server takes one from its pool when bytes arrive and
 * gives it back when the connection is idle again, so idle connections cost only the connection itself.
 * Every request gets its own `Request` and `Response`, stamped with the exchange's `generation`; the
 * generation moves on when the request is over, after which both throw instead of touching the next one.
 */
export class Exchange implements BodySink, ExchangeInfo {
  /** The connection served now (an exchange moves between connections through the server's pool). */
  conn!: Conn<Exchange | null>;
  readonly server: ServerCore;
  readonly head: HeadParser;
  readonly bodyDecoder: BodyDecoder;

  /** @internal Counts requests; a request and its response are valid while theirs is current. */
  generation = 0;
  /** The connection stays open after the current exchange. */
  keepAlive = true;
  /** The current request's minor version (0 or 1). */
  httpMinor = 1;
  /** When the current request's head was complete: `performance.now()` with access logs, else the loop clock. */
  startedAt = 0;
  /** @internal Told when the client goes away mid-exchange (see `Request.onAbort`). */
  abortListener: (() => void) | null = null;
  /** @internal The current request's head: the buffer it is in, and the shift applied once it was copied. */
  headBuf: Buffer = EMPTY;
  /** @internal */ headShift = 0;
  /** @internal Keep-alive clients often ask for the same target again (see `Request.target`). */
  lastTarget = '';
  /** @internal */ lastPath: string | undefined = undefined;
  /** @internal */ lastQuery = '';
  /** @internal Response header names and values of the current response (reused arrays). */
  readonly resNames: string[] = [];
  /** @internal */ readonly resValues: string[] = [];

  private state = IDLE;
  private reader = READER_NONE;
  private consumer: BodyConsumer | null = null;
  private paused = 0;
  private processing = false;
  private continueSent = false;
  private timer = TIMER_NONE;
  private req: Http1Request | null = null;
  private res: Http1Response | null = null;
  private headCopy: Buffer | null = null;
  private drainWaiters: DrainWaiter[] | null = null;
  /** The client sent FIN: no more requests will come. */
  private peerEnded = false;
  /** The generation whose request was told it is abandoned (-1: none). */
  private abandoned = -1;
  /** The generations whose request:start, and whose end (finish or abort), were published. */
  private announced = -1;
  private announcedEnd = -1;
  /** A request was started and is not over for its handler (it may still hold req/res): never pooled then. */
  private holdsRequest = false;

  constructor(server: ServerCore) {
    this.server = server;
    this.head = new HeadParser('request', server.headLimits);
    this.bodyDecoder = new BodyDecoder(server.bodyLimits);
  }

  /**
   * Serves `conn` from now on (a fresh exchange, or one from the pool). `first`: the connection never had
   * one, so the deadline armed is the first head's (from the connection's opening); else the idle one.
   */
  bind(conn: Conn<Exchange | null>, first: boolean): void {
    this.conn = conn;
    this.state = IDLE;
    this.paused = 0;
    this.peerEnded = false;
    this.holdsRequest = false;
    this.timer = first ? TIMER_HEADERS : TIMER_IDLE;
    this.head.reset();
    conn.context = this;
  }

  /** Hands this exchange back to the server's pool if the connection is idle; true if it did. */
  private release(): boolean {
    const pool = this.server.pool;
    if (pool.length >= this.server.poolSize) return false;
    this.conn.context = null;
    this.headBuf = EMPTY;
    pool.push(this);
    return true;
  }

  /** Runs the state machine over whatever is buffered. */
  process(): void {
    if (this.processing) return;
    this.processing = true;
    try {
      this.run();
    } finally {
      this.processing = false;
    }
  }

  private run(): void {
    const conn = this.conn;
    for (;;) {
      if (conn.closed) return;
      switch (this.state) {
        case IDLE: {
          const avail = conn.inboundBuffered;
          if (avail === 0) {
            if (this.peerEnded) {
              this.close(); // the client sent FIN and every complete request it sent is answered
              return;
            }
            if (this.timer !== TIMER_IDLE && this.timer !== TIMER_HEADERS) {
              this.arm(TIMER_IDLE, this.server.options.keepAliveTimeout);
            }
            // Idle: nothing of this exchange is needed until the next bytes (the deadline stays armed).
            if (this.timer === TIMER_IDLE) this.release();
            return;
          }
          const buf = conn.buffer;
          const off = conn.offset;
          const n = this.head.parse(buf, off, off + avail);
          if (n === NEED_MORE) {
            if (this.peerEnded) {
              this.close(); // a partial request after FIN can never complete
              return;
            }
            if (this.head.onlyEmptyLines(buf, off, off + avail)) {
              // RFC 9112 §2.2: a CRLF after a request (old clients send one after a body) is ignored: the
              // connection stays idle under the keep-alive timeout, and closes silently at its end.
              if (this.timer !== TIMER_IDLE && this.timer !== TIMER_HEADERS)
                this.arm(TIMER_IDLE, this.server.options.keepAliveTimeout);
              return;
            }
            if (this.timer !== TIMER_HEADERS) this.arm(TIMER_HEADERS, this.server.options.headersTimeout);
            return;
          }
          if (n === HEAD_ERROR) {
            this.refuse(this.head.errorStatus, this.head.errorReason);
            return;
          }
          conn.discard(n);
          this.startRequest(buf, off);
          continue;
        }
        case BODY:
        case DISCARDING: {
          if (this.reader === READER_NONE && this.state === BODY) {
            // Nobody reads the body yet: it waits in the connection's buffer, and reading stops if it grows.
            if (conn.inboundBuffered >= this.server.options.maxBufferedBody) this.pause(PAUSE_BODY);
            return;
          }
          if ((this.paused & PAUSE_BODY) !== 0) return;
          const avail = conn.inboundBuffered;
          if (avail === 0) return;
          const off = conn.offset;
          const n = this.bodyDecoder.decode(conn.buffer, off, off + avail, this);
          if (n < 0) {
            this.bodyFailed(this.bodyDecoder.errorStatus, this.bodyDecoder.errorReason);
            return;
          }
          conn.discard(n);
          if (!this.bodyDecoder.done) {
            // Every byte the client sent before its FIN is decoded and the body is still short (what the
            // decoder left is part of a trailer section that no byte will complete).
            if (this.peerEnded) this.bodyCutShort();
            return;
          }
          this.bodyComplete();
          continue;
        }
        case RESPONDING:
          if (conn.inboundBuffered >= this.server.options.maxBufferedBody) this.pause(PAUSE_PIPELINE);
          return;
        default:
          return; // UPGRADED, CLOSED
      }
    }
  }

  private startRequest(buf: Buffer, headStart: number): void {
    const head = this.head;
    const options = this.server.options;
    const gen = this.generation;
    const req = new Http1Request(this, gen, head.method, head.minor);
    const res = new Http1Response(this, gen, head.method === 'HEAD');
    this.req = req;
    this.res = res;
    this.holdsRequest = true;
    this.conn.busy = true;
    this.startedAt = this.server.timing ? performance.now() : this.conn.loop.now();
    this.headBuf = buf;
    this.headShift = 0;
    this.httpMinor = head.minor;
    this.clearResponseHeaders();
    this.keepAlive =
      (head.minor === 1 ? !head.connectionClose : head.connectionKeepAlive && !head.connectionClose) &&
      !this.conn.loop.shuttingDown;
    this.consumer = null;
    this.reader = READER_NONE;
    this.abortListener = null;
    this.continueSent = false;
    let mode = BODY_NONE;
    if (head.method === 'CONNECT') {
      // RFC 9110 §9.3.6: a CONNECT has no content; what follows its head is the tunnel's if it is accepted,
      // and nothing to read as HTTP if not (the connection then ends with the answer).
      this.keepAlive = false;
    } else if (head.chunked) mode = BODY_CHUNKED;
    else if (head.contentLength > 0) mode = BODY_LENGTH;
    this.bodyDecoder.begin(mode, head.contentLength);
    this.state = this.bodyDecoder.done ? RESPONDING : BODY;
    if (head.contentLength > options.maxBodySize) {
      this.refuse(413, 'body too large');
      return;
    }
    if (head.expectOther) {
      this.refuse(417, 'unsupported expectation');
      return;
    }
    if (this.state === BODY) this.arm(TIMER_BODY, options.requestTimeout);
    else this.timer = TIMER_NONE; // lazily: a deadline that fires while no timer is wanted is ignored
    this.announceStart();
    try {
      const result = this.server.handler(req, res);
      if (result !== undefined && typeof (result as Promise<void>).then === 'function') {
        // The rejection belongs to this request only: a handler failing after its response ended must not
        // fail the next request on the connection.
        (result as Promise<void>).then(undefined, (err: unknown) => this.rejected(gen, err));
      }
    } catch (err) {
      this.handlerFailed(err);
    }
    if (this.generation === gen && this.headBuf === buf && this.state !== CLOSED) {
      // The request outlives this read turn: its head must not live in the read buffer any more.
      const len = head.headLength;
      if (this.headCopy === null || this.headCopy.length < len)
        this.headCopy = Buffer.allocUnsafe(Math.max(len, 1024));
      buf.copy(this.headCopy, 0, headStart, headStart + len);
      this.headBuf = this.headCopy;
      this.headShift = -headStart;
    }
  }

  /** @internal Empties the current response's header arrays. */
  clearResponseHeaders(): void {
    const names = this.resNames;
    const values = this.resValues;
    while (names.pop() !== undefined);
    while (values.pop() !== undefined);
  }

  /** @internal The protocol the current request asks to upgrade to (`CONNECT` for a tunnel), or undefined. */
  upgradeProtocol(): string | undefined {
    const req = this.req;
    if (req === null) return undefined;
    return req.method === 'CONNECT' ? 'CONNECT' : req.upgrade;
  }

  /** @internal Called by the response right before its head is serialized: last chance to decide keep-alive. */
  beforeHead(): void {
    if (this.conn.loop.shuttingDown) this.keepAlive = false;
    if (this.state !== BODY) return;
    if (this.reader === READER_CONSUMER) {
      // Answered while a reader still streams the body (a proxy whose upstream answered early): the rest of
      // the body cannot be relied on to be read, so this connection ends with the response.
      this.keepAlive = false;
      return;
    }
    // The handler answers without reading the body: discard a small rest, close on a large or unsent one.
    const rest = this.head.chunked
      ? Number.POSITIVE_INFINITY
      : this.head.contentLength - this.bodyDecoder.received;
    if (rest > MAX_DISCARD || (this.head.expectContinue && !this.continueSent)) this.keepAlive = false;
  }

  /** @internal Called by the response's `end` (and by error answers). */
  responseEnded(): void {
    const hook = this.server.onResponse;
    if (hook !== undefined) {
      try {
        hook(this.req!, this.res!, this);
      } catch (err) {
        // A broken hook (an access logger, metrics) must not wedge the connection in mid-exchange.
        this.conn.loop.log.error('http onResponse hook threw', { conn: this.conn.id, error: err });
      }
    }
    if (this.state === BODY) {
      const consumer = this.consumer;
      if (consumer !== null) {
        // The connection closes with this response: the reader would never see the rest of the body.
        this.consumer = null;
        this.reader = READER_NONE;
        consumer.error(
          new HttpError(
            500,
            'the response ended before the request body was read',
            'ERR_HTTP_RESPONSE_ENDED',
          ),
        );
      }
      if (this.keepAlive && !this.conn.closed) {
        this.state = DISCARDING;
        // Reading may have stopped while the body waited for a reader: discarding needs it back.
        this.unpause(PAUSE_BODY);
        if (!this.processing) this.process();
        return;
      }
      this.close();
      return;
    }
    if (this.state === RESPONDING) this.finish();
    if (this.state === IDLE && !this.processing) this.process();
  }

  /** The request is over: its objects go stale; then the next request, or the close. */
  private finish(): void {
    this.announceEnd();
    this.generation++;
    this.holdsRequest = false;
    this.req = this.res = null;
    this.state = IDLE;
    this.conn.busy = false;
    this.consumer = null;
    this.reader = READER_NONE;
    this.abortListener = null;
    if (this.drainWaiters !== null) this.settleDrain(null);
    if (!this.keepAlive) {
      this.close();
      return;
    }
    this.unpause(PAUSE_PIPELINE);
  }

  private close(): void {
    // An answered request whose unread body goes with the connection ends here.
    if (this.res?.finished === true) this.announceEnd();
    this.state = CLOSED;
    this.conn.busy = false;
    this.arm(TIMER_NONE, 0);
    this.conn.close();
  }

  // ---- reading flow control -------------------------------------------------------------------------

  private pause(reason: number): void {
    const was = this.paused;
    this.paused |= reason;
    if (was === 0) this.conn.pause();
  }

  private unpause(reason: number): void {
    if ((this.paused & reason) === 0) return;
    this.paused &= ~reason;
    if (this.paused === 0) this.conn.resume();
  }

  // ---- bodies --------------------------------------------------------------------------------------

  /** BodySink: decoded bytes in place. */
  onBody(buf: Buffer, start: number, end: number): void {
    const consumer = this.consumer;
    if (consumer === null) return; // discarding
    if (consumer.data(buf.subarray(start, end)) === false) this.pause(PAUSE_BODY);
  }

  private bodyComplete(): void {
    if (this.timer === TIMER_BODY) this.timer = TIMER_NONE;
    // A reader that paused on the last chunk must not leave the connection unread for the next request.
    this.unpause(PAUSE_BODY);
    if (this.state === DISCARDING) {
      this.finish();
      return;
    }
    this.state = RESPONDING;
    const consumer = this.consumer;
    this.consumer = null;
    consumer?.end(this.bodyDecoder.trailers);
  }

  private bodyFailed(status: number, reason: string): void {
    const err = new HttpError(status, reason);
    const consumer = this.consumer;
    this.consumer = null;
    this.reader = READER_NONE;
    consumer?.error(err);
    if (this.conn.closed) return;
    if (!this.res!.headersSent) this.refuse(status, reason);
    else this.conn.destroy(err);
  }

  /** @internal Attaches the body's reader; bytes already buffered flow at once. */
  attachBody(consumer: BodyConsumer): void {
    if (this.reader !== READER_NONE || this.state === DISCARDING || this.consumer !== null) {
      throw new HttpError(500, 'the request body is already being read', 'ERR_HTTP_BODY_CONSUMED');
    }
    if (this.state !== BODY) {
      // The body is complete (or there is none): the reader gets its end at once.
      if (this.state === RESPONDING) consumer.end(this.bodyDecoder.trailers);
      else consumer.error(closedError());
      return;
    }
    this.reader = READER_CONSUMER;
    this.consumer = consumer;
    if (this.head.expectContinue && !this.continueSent && !this.res!.headersSent) {
      this.continueSent = true;
      this.conn.writeLatin1(CONTINUE);
    }
    this.unpause(PAUSE_BODY);
    if (!this.processing) this.process();
  }

  /** @internal */
  resumeBody(): void {
    if ((this.paused & PAUSE_BODY) === 0) return;
    this.unpause(PAUSE_BODY);
    if (!this.processing) this.process();
  }

  /**
   * @internal The whole body, bounded by `limit`. The buffer grows with the bytes that arrive: a declared
   * Content-Length is only a claim, and a connection that sends a head alone pins nothing.
   */
  collectBody(limit = this.server.options.maxBodySize): Promise<Buffer> {
    const declared = this.head.contentLength;
    if (declared > limit) return Promise.reject(new HttpError(413, 'body too large'));
    if (this.state !== BODY && !this.head.chunked && declared <= 0) return Promise.resolve(EMPTY);
    return collectBody((consumer) => this.attachBody(consumer), limit);
  }

  // ---- failures ------------------------------------------------------------------------------------

  private rejected(gen: number, err: unknown): void {
    if (gen === this.generation && this.state !== IDLE) {
      this.handlerFailed(err);
      return;
    }
    const status = err instanceof HttpError ? err.status : 500;
    if (status >= 500 && !isClosedError(err))
      this.conn.loop.log.error('http handler failed after its response', { conn: this.conn.id, error: err });
  }

  private handlerFailed(err: unknown): void {
    let status = err instanceof HttpError ? err.status : 500;
    // Only error statuses answer a failure: anything else in an HttpError is a mistake of the handler.
    if (status < 400 || status > 599 || !Number.isInteger(status)) status = 500;
    if (status >= 500 && !isClosedError(err))
      this.conn.loop.log.error('http handler failed', { conn: this.conn.id, error: err });
    const res = this.res;
    if (this.state === UPGRADED || this.state === CLOSED || this.conn.closed) return;
    if (res === null || res.finished || this.state === IDLE) return;
    if (res.headersSent) {
      // Part of the response is out: the only honest signal left is to cut the connection.
      this.conn.destroy(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    // Only the status and its reason go to the client, never an internal error's text: a 4xx HttpError's
    // message is meant for the client, anything else (5xx included) is for the log.
    const reason = err instanceof HttpError && status < 500 ? err.message : (STATUS_TEXT[status] ?? 'error');
    this.respondError(status, reason, this.keepAlive && this.state === RESPONDING);
  }

  /** Answers with an error status and closes: for input the connection cannot continue after. */
  private refuse(status: number, reason: string): void {
    if (this.state === IDLE) {
      // A head that never parsed: nothing of it may pass for a request (access logs read the request).
      const gen = this.generation;
      const req = new Http1Request(this, gen, '', 1);
      req.blank();
      this.req = req;
      this.res = new Http1Response(this, gen, false);
      this.startedAt = this.server.timing ? performance.now() : this.conn.loop.now();
      this.httpMinor = 1;
      this.state = RESPONDING;
      this.holdsRequest = true;
      this.conn.busy = true;
    }
    // A request the server refuses before its handler saw it (a bad head, a body too large) starts here.
    this.announceStart();
    this.respondError(status, reason, false);
  }

  /** Sends an error answer (4xx/5xx): no body for HEAD, the connection closed unless `keep`. */
  private respondError(status: number, reason: string, keep: boolean): void {
    serverAnswered(this.conn.loop, status);
    const res = this.res!;
    const body = `${status} ${STATUS_TEXT[status] ?? ''}: ${reason}\n`;
    const conn = this.conn;
    if (!keep) this.keepAlive = false;
    conn.writeLatin1(
      `${statusLine(status)}${currentDateLine()}content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${keep ? '' : 'connection: close\r\n'}\r\n`,
    );
    const headOnly = this.req!.method === 'HEAD';
    if (!headOnly) conn.write(body);
    res.statusCode = status;
    res.headersSent = res.finished = true;
    res.bytesWritten = headOnly ? 0 : body.length;
    // The server answered in the handler's place: a handler still at work hears that the request is over,
    // after the answer is out, so a listener that ends "its" response finds it ended (one answer, not two).
    this.tellAbandoned(new HttpError(status, reason), true);
    if (this.state === CLOSED || this.res !== res) return; // a listener closed the connection
    this.responseEnded();
  }

  // ---- timers and connection events -----------------------------------------------------------------

  /**
   * Arms the connection's deadline for `timer`. Disarming is lazy (`timer = TIMER_NONE`): a deadline that
   * later passes with no timer wanted is ignored, and re-arming later only moves the time, so a keep-alive
   * request costs no timer-wheel work.
   */
  private arm(timer: number, ms: number): void {
    this.timer = timer;
    this.conn.setDeadline(timer === TIMER_NONE ? 0 : ms);
  }

  /** The armed deadline passed. */
  onDeadline(): void {
    const timer = this.timer;
    this.timer = TIMER_NONE;
    if (timer === TIMER_NONE) return;
    if (timer === TIMER_IDLE) {
      this.close();
    } else if (timer === TIMER_HEADERS) {
      const conn = this.conn;
      const avail = conn.inboundBuffered;
      if (
        this.state === IDLE &&
        (avail === 0 || this.head.onlyEmptyLines(conn.buffer, conn.offset, conn.offset + avail))
      )
        this.close();
      else this.refuse(408, 'request header timeout');
    } else if (timer === TIMER_BODY && (this.state === BODY || this.state === DISCARDING)) {
      // The time is ours, not the client's, while we do not read (our reader asked to wait, or the buffer
      // filled for want of one) or the whole body is already here unread: the clock starts again.
      if ((this.paused & PAUSE_BODY) !== 0 || (this.reader === READER_NONE && this.wholeBodyBuffered())) {
        this.arm(TIMER_BODY, this.server.options.requestTimeout);
        return;
      }
      if (this.state === DISCARDING) {
        this.close(); // answered already: the rest of the body is not coming, and is not needed
        return;
      }
      const err = new HttpError(408, 'request body timeout');
      const consumer = this.consumer;
      this.consumer = null;
      consumer?.error(err);
      if (!this.res!.headersSent) this.refuse(408, 'request body timeout');
      else this.conn.destroy(err);
    }
  }

  /** Whether the rest of the body (or what ends it in a framing error) waits in the buffer, undecoded. */
  private wholeBodyBuffered(): boolean {
    const conn = this.conn;
    if (!this.head.chunked)
      return conn.inboundBuffered >= this.head.contentLength - this.bodyDecoder.received;
    return this.bodyDecoder.wouldEnd(conn.buffer, conn.offset, conn.offset + conn.inboundBuffered);
  }

  /** The client closed its sending side. */
  onEof(): void {
    this.peerEnded = true;
    if (this.state === RESPONDING && this.server.options.clientHalfClose === 'abort') {
      this.abandon(closedError());
      this.conn.close();
      return;
    }
    if (this.state === BODY || this.state === DISCARDING) {
      // Bytes still undecoded in the buffer may complete the body: it is judged once they are (see run()),
      // or now where the count settles it (a Content-Length body that fewer bytes than its rest wait for).
      const buffered = this.conn.inboundBuffered;
      const rest = this.head.chunked ? -1 : this.head.contentLength - this.bodyDecoder.received;
      if (buffered === 0 || (rest >= 0 && buffered < rest)) this.bodyCutShort();
      else if (!this.processing) this.process(); // a decoder that saw them all judges the leftover (run)
      return;
    }
    // Answer the request in progress and every complete one already buffered, then close (see run()).
    if (this.state === IDLE && !this.processing) this.process();
  }

  /** The client sent FIN and what came before it cannot complete the body. */
  private bodyCutShort(): void {
    if (this.bodyDecoder.finish()) return;
    if (this.state === DISCARDING)
      this.close(); // answered already; nothing more to read
    else this.bodyFailed(400, 'client closed before the body was complete');
  }

  /** The connection is gone. Returns whether the exchange is free for the pool. */
  onClosed(err: Error | undefined): boolean {
    if (this.res?.finished === true) this.announceEnd();
    const was = this.state;
    this.state = CLOSED;
    this.paused = 0;
    const consumer = this.consumer;
    this.consumer = null;
    if (was === BODY) consumer?.error(err ?? closedError());
    if (this.holdsRequest) this.abandon(closedError(err));
    if (this.drainWaiters !== null) this.settleDrain(closedError(err));
    // A request not over for its handler may still be held by it: this exchange is not reused then.
    return !this.holdsRequest && was !== UPGRADED;
  }

  /**
   * @internal The request ends before its handler answered it: the client went away (`reason` is
   * `ERR_HTTP_CLOSED`), or the server answered an error in its place (a body timeout, bad framing). Tells the
   * request's abort listener and signal, once. The response notices a lost connection first when a write
   * fails (the close event follows a turn later).
   */
  abandon(reason: HttpError = closedError()): void {
    const res = this.res;
    if (res === null || res.finished) return;
    this.tellAbandoned(reason);
  }

  // ---- diagnostics: one start and one end (a finish or an abort) per request ---------------------------

  /** Publishes `request:start` for the request in progress, once. */
  private announceStart(): void {
    if (this.announced === this.generation) return;
    this.announced = this.generation;
    if (http1Channels.requestStart.hasSubscribers && this.req !== null && this.res !== null)
      http1Channels.requestStart.publish({
        request: this.req,
        response: this.res,
      } satisfies RequestStartMessage);
  }

  /** Publishes `response:finish` for a started request that has not ended yet. */
  private announceEnd(): void {
    if (this.announced !== this.generation || this.announcedEnd === this.generation) return;
    this.announcedEnd = this.generation;
    if (http1Channels.responseFinish.hasSubscribers && this.req !== null && this.res !== null)
      http1Channels.responseFinish.publish({
        request: this.req,
        response: this.res,
      } satisfies ResponseFinishMessage);
  }

  /** Runs the request's abort listener and aborts its signal, once per request. `own`: the server answered. */
  private tellAbandoned(reason: HttpError, own = false): void {
    if (this.abandoned === this.generation) return;
    this.abandoned = this.generation;
    const req = this.req;
    if (!own && this.announced === this.generation && this.announcedEnd !== this.generation) {
      // The request ends without its response: that is its end (no finish follows).
      this.announcedEnd = this.generation;
      if (http1Channels.requestAbort.hasSubscribers && req !== null && this.res !== null)
        http1Channels.requestAbort.publish({
          request: req,
          response: this.res,
          error: reason,
        } satisfies RequestAbortMessage);
    }
    const listener = this.abortListener;
    this.abortListener = null;
    if (listener !== null) {
      try {
        listener();
      } catch (err) {
        this.conn.loop.log.error('http onAbort listener threw', { conn: this.conn.id, error: err });
      }
    }
    req?.abort(reason);
  }

  /** @internal Whether `req` was aborted: the connection closed before its response ended. */
  aborted(req: Http1Request): boolean {
    return req.gen === this.generation && this.conn.closed && this.res !== null && !this.res.finished;
  }

  // ---- backpressure and upgrades -------------------------------------------------------------------

  /**
   * @internal Settles once the connection can take more, never before the loop's next turn: a writer whose
   * every write the kernel takes at once must still let other connections (and a failed write's error,
   * which Node reports a tick later) have their turn.
   */
  drain(): Promise<void> {
    if (this.conn.whenWritable()) {
      if (this.conn.closed) return Promise.reject(closedError());
      return new Promise((resolve, reject) => {
        const conn = this.conn;
        setImmediate(() => (conn.closed ? reject(closedError()) : resolve()));
      });
    }
    return new Promise((resolve, reject) => {
      if (this.drainWaiters === null) this.drainWaiters = [];
      this.drainWaiters.push({ resolve, reject });
    });
  }

  /** The connection's outbound bytes fell to the low-water mark. */
  onWritable(): void {
    if (this.drainWaiters !== null) this.settleDrain(null);
  }

  private settleDrain(err: Error | null): void {
    const waiters = this.drainWaiters!;
    this.drainWaiters = null;
    for (const w of waiters) {
      if (err === null) w.resolve();
      else w.reject(err);
    }
  }

  /** @internal The response accepted an upgrade: the connection leaves HTTP. */
  upgraded(handler: EventHandler): void {
    this.announceEnd(); // its response (the 101) is out: the request is over, the connection leaves HTTP
    this.generation++;
    this.holdsRequest = false;
    this.req = this.res = null;
    this.state = UPGRADED;
    this.conn.busy = false;
    this.arm(TIMER_NONE, 0);
    // A pause of ours (a body nobody read, pipelined bytes piling up) is not the new protocol's.
    if (this.paused !== 0) {
      this.paused = 0;
      this.conn.resume();
    }
    const conn = this.conn as unknown as Conn;
    conn.context = undefined;
    conn.setHandler(handler);
    // The client's FIN came while the upgrade was being answered: the new protocol hears it too.
    if (this.peerEnded) conn.replayEof();
  }
}

function isClosedError(err: unknown): boolean {
  return err instanceof HttpError && err.code === 'ERR_HTTP_CLOSED';
}

const serverErrors = defineMetric(
  'netloom_http1_server_answers_total',
  'counter',
  'Answers the HTTP/1.1 server gave itself (bad requests, limits, timeouts) instead of a handler, by status.',
  ['status'],
);

/** Each loop's series of {@link serverErrors}, by status (made on first use). */
const answered = new WeakMap<EventLoop, Map<number, MetricSeries>>();

function serverAnswered(loop: EventLoop, status: number): void {
  let byStatus = answered.get(loop);
  if (byStatus === undefined) {
    byStatus = new Map();
    answered.set(loop, byStatus);
  }
  let s = byStatus.get(status);
  if (s === undefined) {
    s = loop.metrics.series(serverErrors, [String(status)]);
    byStatus.set(status, s);
  }
  s.add();
}
