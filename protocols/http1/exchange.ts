import type { Conn, EventHandler } from '../../core/index.ts';
import { BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BodyDecoder, type BodySink } from './body.ts';
import { HttpError } from './errors.ts';
import { HEAD_ERROR, HeadParser, NEED_MORE } from './head.ts';
import { type BodyConsumer, Request } from './request.ts';
import { Response } from './response.ts';
import type { ServerCore } from './server.ts';
import { currentDateLine, STATUS_TEXT, statusLine } from './status.ts';

// Which deadline is armed on the connection.
const TIMER_NONE = 0;
const TIMER_IDLE = 1;
const TIMER_HEADERS = 2;
const TIMER_BODY = 3;

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
const EMPTY = Buffer.alloc(0);
/** A body the handler never read is discarded up to this size to keep the connection; beyond, we close. */
const MAX_DISCARD = 256 * 1024;

/**
 * One HTTP/1.1 connection's state machine: parse a head, run the handler, feed the body to whoever reads it
 * (or discard it), wait for the response to end, then the next request. Requests on a connection are served
 * one at a time, so pipelined responses leave in request order; bytes of later requests wait in the
 * connection's buffer (reading pauses if they pile up).
 */
export class Exchange implements BodySink {
  readonly conn: Conn<Exchange>;
  readonly server: ServerCore;
  readonly head: HeadParser;
  readonly bodyDecoder: BodyDecoder;
  readonly req: Request;
  readonly res: Response;

  /** A request is in progress. */
  active = false;
  /** The connection stays open after the current exchange. */
  keepAlive = true;
  /** When the current request's head was complete: `performance.now()` with access logs, else the loop clock. */
  startedAt = 0;
  /** @internal Told when the client goes away mid-exchange (see `Request.onAbort`). */
  abortListener: (() => void) | null = null;

  private bodyDone = true;
  private responseDone = true;
  private consumer: BodyConsumer | null = null;
  private discarding = false;
  private bodyPaused = false;
  private pipelinePaused = false;
  private processing = false;
  private upgradedTo: EventHandler | null = null;
  private continueSent = false;
  private timer = TIMER_NONE;
  private headCopy: Buffer | null = null;
  private drainWaiters: (() => void)[] | null = null;
  /** Counts requests, so a late promise rejection is matched to its own request. */
  private generation = 0;
  /** The client sent FIN: no more requests will come. */
  private peerEnded = false;

  constructor(conn: Conn<Exchange>, server: ServerCore) {
    this.conn = conn;
    this.server = server;
    this.head = new HeadParser('request', server.headLimits);
    this.bodyDecoder = new BodyDecoder(server.bodyLimits);
    this.req = new Request(this, this.head);
    this.res = new Response(this);
    // The first request's head must arrive within headersTimeout of the connection opening.
    this.arm(TIMER_HEADERS, server.options.headersTimeout);
  }

  /** Runs the state machine over whatever is buffered. */
  process(): void {
    if (this.processing || this.upgradedTo !== null) return;
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
      // An upgrade hands the connection to another handler mid-loop: stop touching it at once.
      if (conn.closed || this.upgradedTo !== null) return;
      if (!this.active) {
        const avail = conn.inboundBuffered;
        if (avail === 0) {
          if (this.peerEnded) {
            // The client sent FIN and every complete request it sent is answered.
            this.close();
            return;
          }
          if (this.timer !== TIMER_IDLE && this.timer !== TIMER_HEADERS) {
            this.arm(TIMER_IDLE, this.server.options.keepAliveTimeout);
          }
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
      if (!this.bodyDone) {
        if (this.consumer === null && !this.discarding) {
          // Nobody reads the body yet: it waits in the connection's buffer, and reading stops if it grows.
          if (conn.inboundBuffered >= this.server.options.maxBufferedBody && conn.reading) {
            this.bodyPaused = true;
            conn.pause();
          }
          return;
        }
        if (this.bodyPaused) return;
        const avail = conn.inboundBuffered;
        if (avail === 0) return;
        const off = conn.offset;
        const n = this.bodyDecoder.decode(conn.buffer, off, off + avail, this);
        if (n < 0) {
          this.bodyFailed(this.bodyDecoder.errorStatus, this.bodyDecoder.errorReason);
          return;
        }
        conn.discard(n);
        if (!this.bodyDecoder.done) return;
        this.bodyComplete();
      }
      if (!this.responseDone) {
        if (conn.inboundBuffered >= this.server.options.maxBufferedBody && conn.reading) {
          this.pipelinePaused = true;
          conn.pause();
        }
        return;
      }
      this.finish();
      if (!this.keepAlive) return;
    }
  }

  private startRequest(buf: Buffer, headStart: number): void {
    const head = this.head;
    const options = this.server.options;
    this.active = true;
    this.conn.busy = true;
    this.startedAt = this.server.timing ? performance.now() : this.conn.loop.now();
    this.generation++;
    this.req.begin(buf);
    this.res.begin();
    this.keepAlive =
      (head.minor === 1 ? !head.connectionClose : head.connectionKeepAlive && !head.connectionClose) &&
      !this.server.shuttingDown;
    this.consumer = null;
    this.abortListener = null;
    this.discarding = this.continueSent = false;
    this.responseDone = false;
    let mode = BODY_NONE;
    if (head.chunked) mode = BODY_CHUNKED;
    else if (head.contentLength > 0) mode = BODY_LENGTH;
    this.bodyDecoder.begin(mode, head.contentLength);
    this.bodyDone = this.bodyDecoder.done;
    if (head.contentLength > options.maxBodySize) {
      this.refuse(413, 'body too large');
      return;
    }
    if (head.expectOther) {
      this.refuse(417, 'unsupported expectation');
      return;
    }
    if (!this.bodyDone) this.arm(TIMER_BODY, options.requestTimeout);
    else this.timer = TIMER_NONE; // lazily: a deadline that fires while no timer is wanted is ignored
    try {
      const result = this.server.handler(this.req, this.res);
      if (result !== undefined && typeof (result as Promise<void>).then === 'function') {
        // The rejection belongs to this request only: a handler failing after its response ended must not
        // fail the next request on the connection.
        const generation = this.generation;
        (result as Promise<void>).then(undefined, (err: unknown) => this.rejected(generation, err));
      }
    } catch (err) {
      this.handlerFailed(err);
    }
    if (!this.responseDone && this.active) {
      // The handler goes on after this read turn: its head must not live in the read buffer any more.
      const len = head.headLength;
      if (this.headCopy === null || this.headCopy.length < len)
        this.headCopy = Buffer.allocUnsafe(Math.max(len, 1024));
      this.req.detach(this.headCopy, headStart, len);
    }
  }

  /** Called by the response right before its head is serialized: last chance to decide keep-alive. */
  beforeHead(): void {
    if (this.server.shuttingDown) this.keepAlive = false;
    if (!this.bodyDone && this.consumer !== null) {
      // Answered while a reader still streams the body (a proxy whose upstream answered early): the rest of
      // the body cannot be relied on to be read, so this connection ends with the response.
      this.keepAlive = false;
    } else if (!this.bodyDone) {
      // The handler answers without reading the body: discard a small rest, close on a large or unsent one.
      const rest = this.head.chunked
        ? Number.POSITIVE_INFINITY
        : this.head.contentLength - this.bodyDecoder.received;
      if (rest > MAX_DISCARD || (this.head.expectContinue && !this.continueSent)) this.keepAlive = false;
    }
  }

  /** Called by the response's `end`. */
  responseEnded(): void {
    this.responseDone = true;
    this.server.onResponse?.(this.req, this.res, this);
    if (!this.bodyDone && this.consumer === null) {
      this.discarding = true;
      // Reading may have stopped while the body waited for a reader: discarding needs it back.
      if (this.bodyPaused) {
        this.bodyPaused = false;
        this.conn.resume();
      }
    }
    if (!this.keepAlive) {
      this.close();
      return;
    }
    if (!this.processing) this.process();
  }

  private finish(): void {
    this.active = false;
    this.conn.busy = false;
    this.consumer = null;
    if (this.drainWaiters !== null) this.releaseDrain();
    if (!this.keepAlive) {
      this.close();
      return;
    }
    if (this.pipelinePaused) {
      this.pipelinePaused = false;
      this.conn.resume();
    }
  }

  private close(): void {
    this.active = false;
    this.conn.busy = false;
    this.arm(TIMER_NONE, 0);
    this.conn.close();
  }

  // ---- bodies --------------------------------------------------------------------------------------

  /** BodySink: decoded bytes in place. */
  onBody(buf: Buffer, start: number, end: number): void {
    const consumer = this.consumer;
    if (consumer === null) return; // discarding
    if (consumer.data(buf.subarray(start, end)) === false && !this.bodyPaused) {
      this.bodyPaused = true;
      this.conn.pause();
    }
  }

  private bodyComplete(): void {
    this.bodyDone = true;
    if (this.timer === TIMER_BODY) this.timer = TIMER_NONE;
    if (this.bodyPaused) {
      // A reader that paused on the last chunk must not leave the connection unread for the next request.
      this.bodyPaused = false;
      this.conn.resume();
    }
    const consumer = this.consumer;
    if (consumer !== null && !this.discarding) consumer.end(this.bodyDecoder.trailers);
  }

  private bodyFailed(status: number, reason: string): void {
    const err = new HttpError(status, reason);
    this.consumer?.error(err);
    this.consumer = null;
    if (!this.res.headersSent) this.refuse(status, reason);
    else this.conn.destroy(err);
  }

  /** @internal Attaches the body's reader; bytes already buffered flow at once. */
  attachBody(consumer: BodyConsumer): void {
    if (this.consumer !== null || this.discarding) {
      throw new HttpError(500, 'the request body is already being read', 'ERR_HTTP_BODY_CONSUMED');
    }
    this.consumer = consumer;
    if (this.head.expectContinue && !this.continueSent && !this.res.headersSent && !this.bodyDone) {
      this.continueSent = true;
      this.conn.writeLatin1(CONTINUE);
    }
    if (this.bodyDone) {
      consumer.end(this.bodyDecoder.trailers);
      return;
    }
    if (this.bodyPaused) this.resumeBody();
    else if (!this.processing) this.process();
  }

  /** @internal */
  resumeBody(): void {
    if (!this.bodyPaused) return;
    this.bodyPaused = false;
    this.conn.resume();
    if (!this.processing) this.process();
  }

  /** @internal The whole body, bounded by `limit`. */
  collectBody(limit = this.server.options.maxBodySize): Promise<Buffer> {
    const declared = this.head.contentLength;
    if (declared > limit) return Promise.reject(new HttpError(413, 'body too large'));
    if (this.bodyDone && !this.head.chunked && declared <= 0) return Promise.resolve(EMPTY);
    return new Promise<Buffer>((resolve, reject) => {
      // A declared length is only a claim: large bodies grow as they arrive instead of being allocated upfront.
      const whole = declared > 0 && declared <= 1024 * 1024 ? Buffer.allocUnsafe(declared) : null;
      const parts: Buffer[] = [];
      let size = 0;
      this.attachBody({
        data(chunk) {
          if (size + chunk.length > limit) {
            reject(new HttpError(413, 'body too large'));
            return;
          }
          if (whole !== null) chunk.copy(whole, size);
          else parts.push(Buffer.from(chunk));
          size += chunk.length;
        },
        end() {
          resolve(whole ?? (parts.length === 1 ? parts[0]! : Buffer.concat(parts, size)));
        },
        error: reject,
      });
    });
  }

  /** @internal */
  parseJson<T>(body: Buffer): T {
    try {
      return JSON.parse(body.toString('utf8')) as T;
    } catch {
      throw new HttpError(400, 'request body is not valid JSON');
    }
  }

  // ---- failures ------------------------------------------------------------------------------------

  private rejected(generation: number, err: unknown): void {
    if (generation === this.generation) {
      this.handlerFailed(err);
      return;
    }
    const status = err instanceof HttpError ? err.status : 500;
    if (status >= 500)
      this.conn.loop.log.error('http handler failed after its response', { conn: this.conn.id, error: err });
  }

  private handlerFailed(err: unknown): void {
    if (this.upgradedTo !== null) return;
    const status = err instanceof HttpError ? err.status : 500;
    if (status >= 500) this.conn.loop.log.error('http handler failed', { conn: this.conn.id, error: err });
    if (!this.active || this.responseDone) return;
    if (this.res.headersSent) {
      // Part of the response is out: the only honest signal left is to cut the connection.
      this.conn.destroy(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    // Only the status and its reason go to the client, never an internal error's text: a 4xx HttpError's
    // message is meant for the client, anything else (5xx included) is for the log.
    const reason = err instanceof HttpError && status < 500 ? err.message : (STATUS_TEXT[status] ?? 'error');
    this.respondError(status, reason, this.keepAlive && this.bodyDone);
  }

  /** Answers with an error status and closes: for input the connection cannot continue after. */
  private refuse(status: number, reason: string): void {
    if (!this.active) {
      // A head that never parsed: nothing of it may pass for a request (access logs read the request).
      this.generation++;
      this.startedAt = this.server.timing ? performance.now() : this.conn.loop.now();
      this.req.blank();
      this.res.begin();
    }
    this.active = true;
    this.respondError(status, reason, false);
  }

  private respondError(status: number, reason: string, keep: boolean): void {
    const body = `${status} ${STATUS_TEXT[status] ?? ''}: ${reason}\n`;
    const conn = this.conn;
    if (!keep) this.keepAlive = false;
    conn.writeLatin1(
      `${statusLine(status)}${currentDateLine()}content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${keep ? '' : 'connection: close\r\n'}\r\n`,
    );
    conn.write(body);
    this.res.statusCode = status;
    this.res.headersSent = this.res.finished = true;
    this.res.bytesWritten = body.length;
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
      if (this.conn.inboundBuffered === 0 && !this.active) this.close();
      else this.refuse(408, 'request header timeout');
    } else if (timer === TIMER_BODY) {
      this.consumer?.error(new HttpError(408, 'request body timeout'));
      this.consumer = null;
      if (!this.res.headersSent) this.refuse(408, 'request body timeout');
      else this.conn.destroy(new HttpError(408, 'request body timeout'));
    }
  }

  /** The client closed its sending side. */
  onEof(): void {
    if (this.upgradedTo !== null) return;
    this.peerEnded = true;
    if (this.active && !this.bodyDone) {
      if (!this.bodyDecoder.finish()) {
        this.bodyFailed(400, 'client closed before the body was complete');
        return;
      }
    }
    // Answer the request in progress and every complete one already buffered, then close (see run()).
    if (!this.active && !this.processing) this.process();
  }

  /** The connection is gone. */
  onClosed(err: Error | undefined): void {
    if (this.active && !this.bodyDone) this.consumer?.error(err ?? new HttpError(400, 'connection closed'));
    this.consumer = null;
    if (this.active && !this.responseDone) {
      const listener = this.abortListener;
      this.abortListener = null;
      listener?.();
    }
    if (this.drainWaiters !== null) this.releaseDrain();
  }

  // ---- backpressure and upgrades -------------------------------------------------------------------

  /** @internal */
  drain(): Promise<void> {
    if (this.conn.whenWritable()) return Promise.resolve();
    return new Promise((resolve) => {
      if (this.drainWaiters === null) this.drainWaiters = [];
      this.drainWaiters.push(resolve);
    });
  }

  /** The connection's outbound bytes fell to the low-water mark. */
  onWritable(): void {
    if (this.drainWaiters !== null) this.releaseDrain();
  }

  private releaseDrain(): void {
    const waiters = this.drainWaiters!;
    this.drainWaiters = null;
    for (const w of waiters) w();
  }

  /** @internal The response accepted an upgrade: the connection leaves HTTP. */
  upgraded(handler: EventHandler): void {
    this.upgradedTo = handler;
    this.active = false;
    this.responseDone = true;
    this.conn.busy = false;
    this.arm(TIMER_NONE, 0);
    const conn = this.conn as unknown as Conn;
    conn.context = undefined;
    conn.setHandler(handler);
    handler.onOpen?.(conn);
  }
}
