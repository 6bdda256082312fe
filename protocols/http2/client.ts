/**
 * An HTTP/2 client connection (RFC 9113), for proxies and tests: many requests multiplexed as streams on one
 * dialed `Conn`, request bodies sent within the server's flow-control windows, responses (and their
 * trailers) handed to a {@link ResponseSink} as the HTTP/1.1 client hands them, so a proxy drives both the
 * same way. Streams the server never processed (above a GOAWAY's last stream id, or REFUSED_STREAM) fail with
 * `ERR_HTTP2_REFUSED`: safe to send again on another connection.
 */
import type { Conn, EventHandler } from '../../core/index.ts';
import { HttpError, type OutgoingRequest, type ResponseSink } from '../http1/index.ts';
import {
  DONE,
  Http2ClientStream,
  RECEIVING,
  RESERVED,
  SENDING,
  STREAM_WINDOW,
  WAITING,
} from './client-stream.ts';
import { connectionSpecific, validName, validValue } from './fields.ts';
import { FlowWindow } from './flow.ts';
import { writeGoaway, writeHeaderBlock, writeRstStream, writeWindowUpdate } from './frame-writer.ts';
import {
  ACK,
  applySettings,
  CANCEL,
  CONTINUATION,
  checkFrame,
  DATA,
  defaultSettings,
  END_HEADERS,
  END_STREAM,
  FRAME_HEADER,
  FRAME_SIZE_ERROR,
  type FrameHeader,
  GOAWAY,
  HEADERS,
  Http2Error,
  MIN_MAX_FRAME_SIZE,
  NO_ERROR,
  PADDED,
  PING,
  PREFACE,
  PRIORITY_FLAG,
  PROTOCOL_ERROR,
  PUSH_PROMISE,
  REFUSED_STREAM,
  RST_STREAM,
  readFrameHeader,
  SETTINGS,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_HEADER_LIST_SIZE,
  type Settings,
  WINDOW_UPDATE,
  writeFrameHeader,
} from './frames.ts';
import { HeaderListTooLarge, HpackDecoder, HpackEncoder } from './hpack.ts';

/** Our receive window for the connection (sent as WINDOW_UPDATE after the preface). */
const CONNECTION_WINDOW = 16 * 1024 * 1024;
const MAX_HEADER_LIST = 256 * 1024;
const MAX_HEADER_BLOCK = 256 * 1024;

/** A stream the server did not process: it may be sent again elsewhere. */
export function refusedError(message: string): HttpError {
  return new HttpError(502, message, 'ERR_HTTP2_REFUSED');
}

function badResponse(message: string): HttpError {
  return new HttpError(502, `invalid HTTP/2 response from upstream: ${message}`, 'ERR_HTTP_BAD_RESPONSE');
}

// The connection's states.
const OPENING = 0; // the server's first SETTINGS not yet in
const OPEN = 1;
const GOING_AWAY = 2; // the server sent GOAWAY: no new streams
const CLOSED = 3;

/**
 * One HTTP/2 client connection on a dialed `Conn` (attach it with {@link http2ClientHandler}). Requests may
 * start at once (before the server's SETTINGS arrive, within the initial limits); {@link capacity} says how
 * many more streams the server allows now.
 */
export class Http2ClientConnection {
  readonly conn: Conn<Http2ClientConnection>;
  /** What the server advertised. */
  readonly peer: Settings = defaultSettings();
  /** Free slot for the pool that owns the connection. */
  poolData: unknown = undefined;
  /** Told when a stream ends (the pool may hand out its slot again). */
  onStreamEnd: ((c: Http2ClientConnection) => void) | null = null;
  /** Told once the server's first SETTINGS arrived (its stream limit is known from then on). */
  onReady: ((c: Http2ClientConnection) => void) | null = null;
  /** Told when the server sent GOAWAY (the connection takes no new stream). */
  onGoaway: ((c: Http2ClientConnection) => void) | null = null;
  private state = OPENING;
  private readonly streams = new Map<number, Http2ClientStream>();
  private nextId = 1;
  private readonly sendWindow = new FlowWindow(0, 65_535, CONNECTION_WINDOW);
  private readonly recvWindow = new FlowWindow(0, 0, CONNECTION_WINDOW);
  private readonly encoder = new HpackEncoder();
  private readonly decoder = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: MAX_HEADER_LIST });
  private readonly frame: FrameHeader = { length: 0, type: 0, flags: 0, stream: 0 };
  private blockStream = 0;
  private blockFlags = 0;
  private block: Buffer | null = null;
  private blockLength = 0;
  private blocked: Http2ClientStream[] = [];
  private deadlineArmed = 0;
  /** Streams reserved for requests not sent yet. */
  private reserved = 0;
  /** Loop time an idle connection closes at (0: none). */
  private idleAt = 0;
  /** Loop time the server's SETTINGS are due by (0: none). */
  private settingsDue = 0;

  constructor(conn: Conn<Http2ClientConnection>) {
    this.conn = conn;
    conn.context = this;
    conn.pauseOnBackpressure = false;
  }

  /** Streams that may be opened now (0 once the server is going away or the connection closed). */
  get capacity(): number {
    if (this.state >= GOING_AWAY || this.conn.closed || this.nextId + 2 * this.reserved > 2 ** 31 - 1)
      return 0;
    const limit = Math.min(this.peer.maxConcurrentStreams, 1000);
    return Math.max(0, limit - this.streams.size - this.reserved);
  }

  /** The server's first SETTINGS arrived. */
  get ready(): boolean {
    return this.state === OPEN;
  }

  /** The server sent GOAWAY, or the connection closed: no new stream. */
  get goingAway(): boolean {
    return this.state >= GOING_AWAY;
  }

  /** Streams in progress (reserved ones included). */
  get active(): number {
    return this.streams.size + this.reserved;
  }

  /** Closes the connection unless the server's first SETTINGS arrive within `ms`. */
  expectSettingsWithin(ms: number): void {
    this.settingsDue = this.conn.loop.now() + ms;
    this.armDeadline(this.settingsDue);
  }

  /** Closes the connection once it has carried no stream for `ms` (a new stream cancels it). */
  closeWhenIdleFor(ms: number): void {
    this.idleAt = this.conn.loop.now() + ms;
    this.armDeadline(this.idleAt);
  }

  /** Takes a stream slot for a request to come; throws `ERR_HTTP2_REFUSED` when none is left. */
  reserve(scheme: 'http' | 'https' = 'http'): Http2ClientStream {
    if (this.capacity === 0) throw refusedError('the upstream HTTP/2 connection takes no new stream');
    this.idleAt = 0;
    this.reserved++;
    this.conn.busy = true;
    return new Http2ClientStream(this, scheme);
  }

  /** Gives back a reserved stream that sent no request. */
  unreserve(s: Http2ClientStream): void {
    if (s.state !== RESERVED) return;
    s.state = DONE;
    this.reserved--;
    if (this.active === 0) {
      this.conn.busy = false;
      if (this.state === GOING_AWAY) this.conn.close();
    }
    this.onStreamEnd?.(this);
  }

  /** @internal The dial completed: our preface, SETTINGS and the connection window. */
  opened(): void {
    const conn = this.conn;
    const buf = conn.reserve(PREFACE.length + FRAME_HEADER + 18 + FRAME_HEADER + 4);
    let p = conn.reservedAt;
    PREFACE.copy(buf, p);
    p += PREFACE.length;
    p = writeFrameHeader(buf, p, 18, SETTINGS, 0, 0);
    for (const [id, value] of [
      [SETTINGS_ENABLE_PUSH, 0],
      [SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW],
      [SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST],
    ] as const) {
      buf.writeUInt16BE(id, p);
      buf.writeUInt32BE(value, p + 2);
      p += 6;
    }
    p = writeFrameHeader(buf, p, 4, WINDOW_UPDATE, 0, 0);
    buf.writeUInt32BE(CONNECTION_WINDOW - 65_535, p);
    conn.commit(p + 4);
  }

  /**
   * Starts a request: `req.target` is `:path`, `req.host` `:authority`; fields (as pairs and raw lines) lose
   * their connection-specific ones. The body follows with `writeBody`/`endBody` unless `framing` is `none`
   * or 0 (then END_STREAM goes with the head). Throws `ERR_HTTP2_REFUSED` when no stream can be opened.
   */
  /** @internal Sends `s`'s request (see {@link Http2ClientStream.request}). */
  start(s: Http2ClientStream, req: OutgoingRequest, sink: ResponseSink): void {
    if (s.state !== RESERVED)
      throw new HttpError(500, 'this stream carried its request', 'ERR_HTTP_CLIENT_BUSY');
    if (this.conn.closed || this.state === CLOSED) {
      this.unreserve(s);
      throw refusedError('the upstream HTTP/2 connection closed');
    }
    // Every field is checked before the encoder sees one: a block begun and not sent would leave its
    // dynamic table ahead of the server's decoder.
    const names: string[] = [];
    const values: string[] = [];
    for (const [name, value] of req.headers ?? []) checkedField(name, value, names, values);
    if (req.raw !== undefined) {
      let scratch = rawScratch;
      if (scratch.length < req.raw.size)
        scratch = rawScratch = Buffer.allocUnsafe(Math.max(req.raw.size, scratch.length * 2));
      const text = scratch.toString('latin1', 0, req.raw.copy(scratch, 0));
      for (let p = 0; p < text.length; ) {
        let eol = text.indexOf('\r\n', p);
        if (eol === -1) eol = text.length;
        const colon = text.indexOf(':', p);
        if (colon > p && colon < eol)
          checkedField(text.slice(p, colon), text.slice(colon + 1, eol), names, values);
        p = eol + 2;
      }
    }
    if (
      !validValue(req.target) ||
      req.target.length === 0 ||
      !validValue(req.host) ||
      !validName(req.method.toLowerCase())
    )
      throw new HttpError(500, 'invalid request line to send', 'ERR_HTTP_INVALID_REQUEST');
    this.reserved--;
    const id = this.nextId;
    this.nextId += 2;
    s.id = id;
    s.sendWindow = new FlowWindow(id, this.peer.initialWindowSize, STREAM_WINDOW);
    s.recvWindow = new FlowWindow(id, 0, STREAM_WINDOW);
    s.sink = sink;
    s.headRequest = req.method === 'HEAD';
    s.state = SENDING;
    const enc = this.encoder;
    enc.begin();
    enc.add(':method', req.method);
    enc.add(':scheme', s.scheme);
    enc.add(':authority', req.host);
    enc.add(':path', req.target);
    for (let k = 0; k < names.length; k++) enc.add(names[k]!, values[k]!);
    if (typeof req.framing === 'number' && req.framing > 0) enc.add('content-length', String(req.framing));
    // We read trailers (gRPC's status travels in them): some servers answer only clients that say so.
    enc.add('te', 'trailers');
    const endStream = req.framing === 'none' || req.framing === 0;
    this.streams.set(id, s);
    this.writeBlock(id, enc.finish(), endStream);
    if (endStream) {
      s.reqEnded = true;
      s.state = WAITING;
    }
  }

  private writeBlock(id: number, block: Buffer, endStream: boolean): void {
    writeHeaderBlock(this.conn, id, block, endStream, this.peer.maxFrameSize);
  }

  /** @internal Body bytes of `s` (and its end): within the windows, the rest queued. */
  sendBody(
    s: Http2ClientStream,
    data: Uint8Array,
    end: boolean,
    trailers: readonly (readonly [string, string])[] | null,
  ): boolean {
    // Full duplex: the body may go on after the response head arrived (gRPC streams both ways).
    if (s.reqEnded || s.state === DONE || s.state === RESERVED || this.conn.closed) return true;
    if (end) {
      s.outEnd = true;
      s.outTrailers = trailers;
    }
    if (s.outBytes > 0) {
      if (data.byteLength > 0) this.enqueue(s, data, 0);
      return false;
    }
    const sent = this.dataFrames(s, data, 0);
    if (sent < data.byteLength) {
      this.enqueue(s, data, sent);
      return false;
    }
    if (s.outEnd) this.finishBody(s);
    return this.conn.outboundBuffered < this.conn.loop.options.highWaterMark;
  }

  private enqueue(s: Http2ClientStream, data: Uint8Array, from: number): void {
    const copy = Buffer.from(data.subarray(from));
    if (s.outQueue === null) s.outQueue = [];
    s.outQueue.push(copy);
    s.outBytes += copy.length;
    if (!this.blocked.includes(s)) this.blocked.push(s);
  }

  private dataFrames(s: Http2ClientStream, data: Uint8Array, from: number): number {
    const conn = this.conn;
    const total = data.byteLength;
    let p = from;
    while (p < total) {
      const n = Math.min(s.sendWindow.send, this.sendWindow.send, this.peer.maxFrameSize, total - p);
      if (n <= 0) return p;
      const buf = conn.reserve(FRAME_HEADER);
      conn.commit(writeFrameHeader(buf, conn.reservedAt, n, DATA, 0, s.id));
      conn.write(data.subarray(p, p + n));
      s.sendWindow.sent(n);
      this.sendWindow.sent(n);
      p += n;
    }
    return p;
  }

  /** The body is all out: END_STREAM on an empty DATA frame, or on the trailers. */
  private finishBody(s: Http2ClientStream): void {
    s.reqEnded = true;
    const names: string[] = [];
    const values: string[] = [];
    let valid = true;
    if (s.outTrailers !== null) {
      try {
        for (const [name, value] of s.outTrailers) checkedField(name, value, names, values);
      } catch {
        valid = false; // a trailer that cannot go: the body ends without trailers rather than not at all
      }
    }
    if (names.length > 0 && valid) {
      const enc = this.encoder;
      enc.begin();
      for (let k = 0; k < names.length; k++) enc.add(names[k]!, values[k]!);
      this.writeBlock(s.id, enc.finish(), true);
    } else {
      const conn = this.conn;
      const buf = conn.reserve(FRAME_HEADER);
      conn.commit(writeFrameHeader(buf, conn.reservedAt, 0, DATA, END_STREAM, s.id));
    }
    if (s.state === SENDING) s.state = WAITING;
  }

  private flushBlocked(): void {
    const list = this.blocked;
    this.blocked = [];
    for (const s of list) {
      const queue = s.outQueue;
      if (queue === null || s.state === DONE) continue;
      while (queue.length > 0) {
        const chunk = queue[0]!;
        const sent = this.dataFrames(s, chunk, 0);
        s.outBytes -= sent;
        if (sent < chunk.length) {
          queue[0] = chunk.subarray(sent);
          this.blocked.push(s);
          break;
        }
        queue.shift();
      }
      if (queue.length > 0) continue;
      s.outQueue = null;
      if (s.outEnd) this.finishBody(s);
      else s.onWritable?.(s);
    }
  }

  /** @internal */
  resumeStream(s: Http2ClientStream): void {
    if (!s.paused) return;
    s.paused = false;
    const queue = s.inQueue;
    s.inQueue = null;
    if (queue !== null) {
      for (let i = 0; i < queue.length; i++) {
        const chunk = queue[i]!;
        this.credit(s, chunk.length);
        if (!this.deliver(s, chunk)) {
          if (s.state === DONE) return;
          s.paused = true;
          s.inQueue = queue.slice(i + 1);
          if (s.inQueue.length === 0) s.inQueue = null;
          return;
        }
      }
    }
    if (s.inEnded) this.complete(s, s.inTrailers);
  }

  /** @internal */
  cancel(s: Http2ClientStream, err: Error): void {
    if (s.state === DONE) return;
    if (s.state === RESERVED) {
      this.unreserve(s);
      return;
    }
    this.writeRst(s.id, CANCEL);
    this.end(s);
    const sink = s.sink;
    s.sink = null;
    sink?.onError(err);
  }

  // ---- reading -----------------------------------------------------------------------------------------

  /** @internal The server's bytes. */
  traffic(): void {
    try {
      this.readFrames();
    } catch (err) {
      if (!(err instanceof Http2Error)) throw err;
      this.fail(err.code, err.message);
    }
  }

  private readFrames(): void {
    const conn = this.conn;
    const h = this.frame;
    while (this.state !== CLOSED && !conn.closed) {
      const avail = conn.inboundBuffered;
      if (avail < FRAME_HEADER) return;
      const buf = conn.buffer;
      const off = conn.offset;
      readFrameHeader(buf, off, h);
      if (h.length > MIN_MAX_FRAME_SIZE)
        throw new Http2Error(FRAME_SIZE_ERROR, `a frame of ${h.length} octets`);
      if (avail < FRAME_HEADER + h.length) return;
      if (h.type === PUSH_PROMISE) throw new Http2Error(PROTOCOL_ERROR, 'PUSH_PROMISE though push is off');
      try {
        checkFrame(h, MIN_MAX_FRAME_SIZE);
        this.dispatch(h, buf, off + FRAME_HEADER);
      } catch (err) {
        if (!(err instanceof Http2Error) || err.stream === 0) throw err;
        const s = this.streams.get(err.stream);
        if (s !== undefined) this.streamFailed(s, badResponse(err.message), err.code);
      }
      conn.discard(FRAME_HEADER + h.length);
    }
  }

  private dispatch(h: FrameHeader, buf: Buffer, p: number): void {
    if (this.blockStream !== 0 && (h.type !== CONTINUATION || h.stream !== this.blockStream))
      throw new Http2Error(PROTOCOL_ERROR, 'a frame inside a header block');
    switch (h.type) {
      case SETTINGS:
        if ((h.flags & ACK) !== 0) return;
        {
          const old = this.peer.initialWindowSize;
          applySettings(buf, p, h.length, this.peer);
          this.encoder.setMaxTableSize(Math.min(this.peer.headerTableSize, 4096));
          const delta = this.peer.initialWindowSize - old;
          if (delta !== 0) for (const s of this.streams.values()) s.sendWindow.onInitialWindowChange(delta);
          const conn = this.conn;
          const out = conn.reserve(FRAME_HEADER);
          conn.commit(writeFrameHeader(out, conn.reservedAt, 0, SETTINGS, ACK, 0));
          if (delta > 0) this.flushBlocked();
          if (this.state === OPENING) {
            this.state = OPEN;
            this.onReady?.(this);
          }
        }
        return;
      case PING:
        if ((h.flags & ACK) !== 0) return;
        {
          const conn = this.conn;
          const out = conn.reserve(FRAME_HEADER + 8);
          const q = writeFrameHeader(out, conn.reservedAt, 8, PING, ACK, 0);
          buf.copy(out, q, p, p + 8);
          conn.commit(q + 8);
        }
        return;
      case GOAWAY:
        this.goawayReceived(buf.readUInt32BE(p) & 0x7fffffff, buf.readUInt32BE(p + 4));
        return;
      case WINDOW_UPDATE: {
        const increment = buf.readUInt32BE(p) & 0x7fffffff;
        if (h.stream === 0) this.sendWindow.onWindowUpdate(increment);
        else {
          const s = this.streams.get(h.stream);
          if (s === undefined) return;
          s.sendWindow.onWindowUpdate(increment);
        }
        this.flushBlocked();
        return;
      }
      case RST_STREAM: {
        const s = this.streams.get(h.stream);
        if (s === undefined) return;
        const code = buf.readUInt32BE(p);
        if (code === NO_ERROR && s.state === RECEIVING) {
          // The server needs no more of the request (§8.1); its response goes on (or is complete).
          s.outQueue = null;
          s.outBytes = 0;
          s.outEnd = false;
          s.reqEnded = true;
          return;
        }
        this.end(s);
        const sink = s.sink;
        s.sink = null;
        sink?.onError(
          code === REFUSED_STREAM
            ? refusedError('the upstream refused the stream')
            : new HttpError(502, `the upstream reset the stream (code ${code})`, 'ERR_HTTP2_STREAM_RESET'),
        );
        return;
      }
      case HEADERS:
      case CONTINUATION:
        this.onHeaderFrame(h, buf, p);
        return;
      case DATA:
        this.onData(h, buf, p);
        return;
    }
  }

  private onHeaderFrame(h: FrameHeader, buf: Buffer, p: number): void {
    let start = p;
    let end = p + h.length;
    if (h.type === HEADERS) {
      if ((h.flags & PADDED) !== 0) {
        const pad = buf[p]!;
        start++;
        if (pad > end - start) throw new Http2Error(PROTOCOL_ERROR, 'HEADERS padding longer than the frame');
        end -= pad;
      }
      if ((h.flags & PRIORITY_FLAG) !== 0) start += 5;
      this.blockStream = h.stream;
      this.blockFlags = h.flags;
      this.blockLength = 0;
    } else if (this.blockStream === 0) {
      throw new Http2Error(PROTOCOL_ERROR, 'CONTINUATION outside a header block');
    }
    const n = end - start;
    if (this.blockLength + n > MAX_HEADER_BLOCK)
      throw new Http2Error(PROTOCOL_ERROR, 'a header block too large');
    if (this.block === null || this.block.length < this.blockLength + n) {
      const grown = Buffer.allocUnsafe(Math.max(4096, (this.blockLength + n) * 2));
      this.block?.copy(grown, 0, 0, this.blockLength);
      this.block = grown;
    }
    buf.copy(this.block, this.blockLength, start, end);
    this.blockLength += n;
    if ((h.flags & END_HEADERS) === 0) return;
    const id = this.blockStream;
    this.blockStream = 0;
    let fields: ReturnType<HpackDecoder['decode']>;
    try {
      fields = this.decoder.decode(this.block, 0, this.blockLength);
    } catch (err) {
      if (err instanceof HeaderListTooLarge) {
        const s = this.streams.get(id);
        if (s !== undefined) this.streamFailed(s, badResponse('response header list too large'), CANCEL);
        return;
      }
      throw new Http2Error(0x9, `response header block: ${(err as Error).message}`);
    }
    const s = this.streams.get(id);
    if (s === undefined || s.state === DONE) return;
    s.answered = true;
    const endStream = (this.blockFlags & END_STREAM) !== 0;
    if (s.state === RECEIVING) {
      // Trailers.
      if (!endStream) throw new Http2Error(PROTOCOL_ERROR, 'trailers without END_STREAM', id);
      const trailers: [string, string][] = [];
      for (const f of fields) {
        if (f.name.charCodeAt(0) === 0x3a)
          throw new Http2Error(PROTOCOL_ERROR, 'a pseudo-header in trailers', id);
        trailers.push([f.name, f.value]);
      }
      this.bodyEnded(s, trailers);
      return;
    }
    let status = -1;
    const names: string[] = [];
    const values: string[] = [];
    let length = -1;
    for (const f of fields) {
      if (f.name === ':status') {
        if (status !== -1 || names.length > 0 || !/^\d{3}$/.test(f.value))
          throw new Http2Error(PROTOCOL_ERROR, 'a bad :status', id);
        status = Number(f.value);
        continue;
      }
      if (
        f.name.charCodeAt(0) === 0x3a ||
        !validName(f.name) ||
        !validValue(f.value) ||
        connectionSpecific(f.name)
      )
        throw new Http2Error(PROTOCOL_ERROR, `a malformed response field ${f.name}`, id);
      if (f.name === 'content-length') length = /^\d{1,15}$/.test(f.value) ? Number(f.value) : -2;
      if (length === -2) throw new Http2Error(PROTOCOL_ERROR, 'a bad content-length', id);
      names.push(f.name);
      values.push(f.value);
    }
    if (status < 100) throw new Http2Error(PROTOCOL_ERROR, 'no :status', id);
    if (status < 200) return; // interim (100, 103): the final head follows
    s.state = RECEIVING;
    s.setHead(status, names, values, length);
    s.sink?.onHead(s);
    if (endStream && s.state === RECEIVING) this.bodyEnded(s, []);
  }

  private onData(h: FrameHeader, buf: Buffer, p: number): void {
    let start = p;
    let end = p + h.length;
    if ((h.flags & PADDED) !== 0) {
      const pad = buf[p]!;
      start++;
      if (pad > end - start) throw new Http2Error(PROTOCOL_ERROR, 'DATA padding longer than the frame');
      end -= pad;
    }
    this.recvWindow.onData(h.length);
    const s = this.streams.get(h.stream);
    if (s === undefined || s.state !== RECEIVING) {
      this.giveBack(h.length);
      if (s !== undefined && s.state !== DONE)
        throw new Http2Error(PROTOCOL_ERROR, 'DATA before the response head', h.stream);
      return;
    }
    try {
      s.recvWindow.onData(h.length);
    } catch (err) {
      this.giveBack(h.length);
      throw err;
    }
    if (h.length > end - start) this.credit(s, h.length - (end - start));
    const view = buf.subarray(start, end);
    const n = view.length;
    const length = s.contentLength;
    const endStream = (h.flags & END_STREAM) !== 0;
    // A body that disagrees with its content-length (or any body for HEAD, 204, 304) fails its stream only.
    const noBody = s.headRequest || s.status === 204 || s.status === 304;
    if (
      (noBody && n > 0) ||
      (length >= 0 && !noBody && (s.received + n > length || (endStream && s.received + n !== length)))
    ) {
      this.credit(s, n);
      throw new Http2Error(PROTOCOL_ERROR, 'a response body that disagrees with its content-length', s.id);
    }
    s.received += n;
    if (n > 0) {
      if (s.paused) {
        if (s.inQueue === null) s.inQueue = [];
        s.inQueue.push(Buffer.from(view));
      } else {
        this.credit(s, n);
        if (!this.deliver(s, view) && (s.state as number) !== DONE) s.paused = true;
      }
    }
    if (endStream && (s.state as number) !== DONE) this.bodyEnded(s, []);
  }

  private bodyEnded(s: Http2ClientStream, trailers: [string, string][]): void {
    if (s.paused) {
      s.inEnded = true;
      s.inTrailers = trailers;
      return;
    }
    this.complete(s, trailers);
  }

  /** Hands `chunk` to the sink; false when it asked to pause or failed (a throw fails the stream only). */
  private deliver(s: Http2ClientStream, chunk: Buffer): boolean {
    try {
      return s.sink?.onBody(chunk) !== false;
    } catch (err) {
      this.streamFailed(s, err instanceof Error ? err : new Error(String(err)), CANCEL);
      return false;
    }
  }

  private complete(s: Http2ClientStream, trailers: readonly [string, string][]): void {
    if (!s.reqEnded && !this.conn.closed) {
      // Answered before our body ended: the stream is half-open on the server until we say we are done
      // (it would hold one of its concurrency slots), and the rest of the body is not wanted.
      this.writeRst(s.id, CANCEL);
    }
    this.end(s);
    const sink = s.sink;
    s.sink = null;
    try {
      sink?.onEnd(trailers);
    } catch (err) {
      this.conn.loop.log.error('http2 client: a response sink failed at the end', {
        stream: s.id,
        error: err,
      });
    }
  }

  private credit(s: Http2ClientStream, n: number): void {
    this.giveBack(n);
    const increment = s.recvWindow.consume(n);
    if (increment > 0 && s.state !== DONE) this.windowUpdate(s.id, increment);
  }

  private giveBack(n: number): void {
    const increment = this.recvWindow.consume(n);
    if (increment > 0) this.windowUpdate(0, increment);
  }

  private windowUpdate(id: number, increment: number): void {
    writeWindowUpdate(this.conn, id, increment);
  }

  private writeRst(id: number, code: number): void {
    writeRstStream(this.conn, id, code);
  }

  private goawayReceived(last: number, code: number): void {
    const first = this.state < GOING_AWAY;
    this.state = GOING_AWAY;
    if (first) this.onGoaway?.(this);
    // Streams above `last` were never processed: they fail as refused (the caller may send them again).
    for (const s of [...this.streams.values()]) {
      if (s.id <= last) continue;
      this.end(s);
      const sink = s.sink;
      s.sink = null;
      sink?.onError(refusedError(`the upstream went away (GOAWAY, code ${code}) before this stream`));
    }
    if (this.active === 0) this.conn.close();
  }

  /** A stream error of ours on `s` (a malformed response): reset it, the sink hears `err`. */
  private streamFailed(s: Http2ClientStream, err: Error, code: number): void {
    this.writeRst(s.id, code);
    this.end(s);
    const sink = s.sink;
    s.sink = null;
    sink?.onError(err);
  }

  /** Takes `s` out of the connection. */
  private end(s: Http2ClientStream): void {
    if (s.state === DONE) return;
    s.state = DONE;
    this.streams.delete(s.id);
    const i = this.blocked.indexOf(s);
    if (i !== -1) this.blocked.splice(i, 1);
    if (s.inQueue !== null) {
      for (const chunk of s.inQueue) this.giveBack(chunk.length);
      s.inQueue = null;
    }
    if (this.active === 0) {
      this.conn.busy = false;
      if (this.state === GOING_AWAY) this.conn.close();
    }
    this.onStreamEnd?.(this);
  }

  /** A connection error: GOAWAY, and every stream fails. */
  private fail(code: number, message: string): void {
    writeGoaway(this.conn, 0, code, message);
    this.conn.close(badResponse(message));
  }

  // ---- deadlines and the end ---------------------------------------------------------------------------

  /** @internal A stream wants a deadline at `at` (loop time): the connection's fires at the earliest. */
  armDeadline(at: number): void {
    if (this.deadlineArmed !== 0 && this.deadlineArmed <= at) return;
    this.deadlineArmed = at;
    this.conn.setDeadline(Math.max(1, at - this.conn.loop.now()));
  }

  /** @internal The connection's deadline passed: streams whose own passed fail. */
  deadline(): void {
    this.deadlineArmed = 0;
    const now = this.conn.loop.now();
    if (this.state === OPENING && this.settingsDue !== 0) {
      if (now >= this.settingsDue) {
        this.conn.close(badResponse('no SETTINGS from the server in time'));
        return;
      }
      this.armDeadline(this.settingsDue);
    }
    if (this.idleAt !== 0 && this.active === 0) {
      if (now >= this.idleAt) {
        this.conn.close();
        return;
      }
      this.armDeadline(this.idleAt);
    }
    let next = 0;
    for (const s of [...this.streams.values()]) {
      if (s.deadlineAt === 0) continue;
      if (s.deadlineAt <= now) {
        const err = new HttpError(504, 'upstream timeout', 'ERR_NETLOOM_DEADLINE');
        this.cancel(s, err);
      } else if (next === 0 || s.deadlineAt < next) next = s.deadlineAt;
    }
    if (next !== 0) this.armDeadline(next);
  }

  /** @internal The server closed its side. */
  eof(): void {
    this.conn.close();
  }

  /** @internal The connection is gone: every stream fails. */
  closed(err: Error | undefined): void {
    this.state = CLOSED;
    for (const s of [...this.streams.values()]) {
      // A response received whole and waiting on a slow reader is the reader's still: it completes on resume.
      if (s.inEnded) continue;
      this.end(s);
      const sink = s.sink;
      s.sink = null;
      const failure = s.answered
        ? new HttpError(502, 'upstream connection closed', 'ERR_HTTP_UPSTREAM_CLOSED')
        : (err ?? new HttpError(502, 'upstream connection closed', 'ERR_HTTP_UPSTREAM_CLOSED'));
      sink?.onError(failure);
    }
    this.blocked = [];
  }

  /** @internal The socket drained: streams held back by it may write again. */
  writable(): void {
    for (const s of this.streams.values()) if (s.outBytes === 0 && !s.reqEnded) s.onWritable?.(s);
  }
}

let rawScratch = Buffer.allocUnsafe(4096);

/** Adds a request field to send to `names`/`values`, lower-cased and checked; connection fields are dropped. */
function checkedField(name: string, value: string, names: string[], values: string[]): void {
  const lower = name.toLowerCase();
  const v = value.trim();
  if (lower === 'host' || lower === 'te' || connectionSpecific(lower)) return;
  if (!validName(lower) || !validValue(v))
    throw new HttpError(500, `invalid request field ${JSON.stringify(name)}`, 'ERR_HTTP_INVALID_REQUEST');
  names.push(lower);
  values.push(v);
}

/**
 * The engine handler for dialed connections carrying an {@link Http2ClientConnection} in `context`:
 * `onOpen` when the dial completed (the preface is sent first), `onClose` when it failed or ended.
 */
export function http2ClientHandler(hooks: {
  onOpen?(client: Http2ClientConnection): void;
  onClose?(client: Http2ClientConnection, err: Error | undefined): void;
}): EventHandler<Http2ClientConnection> {
  return {
    onOpen(conn) {
      const c = conn.context!;
      c.opened();
      hooks.onOpen?.(c);
    },
    onTraffic(conn) {
      conn.context!.traffic();
    },
    onEof(conn) {
      conn.context!.eof();
    },
    onDeadline(conn) {
      conn.context!.deadline();
    },
    onWritable(conn) {
      conn.context!.writable();
    },
    onClose(conn, err) {
      const c = conn.context!;
      c.closed(err);
      hooks.onClose?.(c, err);
    },
  };
}
