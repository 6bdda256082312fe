/**
 * One HTTP/2 connection, server side (RFC 9113): the preface, SETTINGS and their acknowledgement, frames read
 * in place from the connection's buffer and dispatched by type, header blocks assembled across CONTINUATION
 * and decoded by one HPACK decoder, streams opened and run through the handler, flow control both ways,
 * PING, GOAWAY, and the limits that keep a hostile peer from costing more than it sends.
 *
 * Errors: a stream error resets that stream (RST_STREAM with the RFC's code) and the connection goes on; a
 * connection error sends GOAWAY with its code and closes. Both come from {@link Http2Error}.
 */
import type { Conn } from '../../core/index.ts';
import { currentDateLine, HttpError, STATUS_TEXT } from '../http1/index.ts';
import { Budget, CLOSED_BY_PEER, CLOSED_BY_US, CLOSED_NORMAL, ClosedStreams } from './connection-memory.ts';
import { checkRequest, checkTrailers, connectionSpecific, type RequestHead } from './fields.ts';
import { FlowWindow } from './flow.ts';
import { writeGoaway, writeHeaderBlock, writeRstStream, writeWindowUpdate } from './frame-writer.ts';
import {
  ACK,
  applySettings,
  CANCEL,
  COMPRESSION_ERROR,
  CONTINUATION,
  checkFrame,
  DATA,
  defaultSettings,
  END_HEADERS,
  END_STREAM,
  ENHANCE_YOUR_CALM,
  FRAME_HEADER,
  FRAME_SIZE_ERROR,
  type FrameHeader,
  GOAWAY,
  HEADERS,
  Http2Error,
  INTERNAL_ERROR,
  NO_ERROR,
  PADDED,
  PING,
  PREFACE,
  PRIORITY,
  PRIORITY_FLAG,
  PROTOCOL_ERROR,
  REFUSED_STREAM,
  RST_STREAM,
  readFrameHeader,
  SETTINGS,
  SETTINGS_HEADER_TABLE_SIZE,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SETTINGS_MAX_FRAME_SIZE,
  SETTINGS_MAX_HEADER_LIST_SIZE,
  SETTINGS_TIMEOUT,
  type Settings,
  STREAM_CLOSED,
  typeName,
  WINDOW_UPDATE,
  writeFrameHeader,
} from './frames.ts';
import { HeaderListTooLarge, HpackDecoder, HpackEncoder, HpackError } from './hpack.ts';
import type { Http2Core } from './server.ts';
import { Http2Stream, streamClosedError } from './stream.ts';
import { CLOSED, HALF_CLOSED_LOCAL, HALF_CLOSED_REMOTE, IDLE, onReceive } from './stream-state.ts';

// The connection's states.
/** Waiting for the client's 24-octet preface. */
const PREFACE_WAIT = 0;
/** The preface is in; the first frame must be SETTINGS (§3.4). */
const FIRST_SETTINGS = 1;
const ACTIVE = 2;
/** GOAWAY sent: streams up to its last id run to their end, then the connection closes. */
const DRAINING = 3;
const DONE = 4;

/** Recently closed streams remembered, to tell frames in flight (ignored) from misuse (errors). */
const CLOSED_MEMORY = 256;

export class Http2Connection {
  readonly conn: Conn;
  readonly core: Http2Core;
  /** What we advertised (and what the peer must respect once it acknowledged). */
  readonly settings: Settings;
  /** What the peer advertised. */
  readonly peer: Settings = defaultSettings();
  private state = PREFACE_WAIT;
  private readonly streams = new Map<number, Http2Stream>();
  /** Streams counted against SETTINGS_MAX_CONCURRENT_STREAMS: open ones and reset ones whose handler runs. */
  private active = 0;
  /** The highest stream id the peer opened. */
  private lastStreamId = 0;
  private readonly closedStreams = new ClosedStreams(CLOSED_MEMORY);
  private readonly sendWindow: FlowWindow;
  private readonly recvWindow: FlowWindow;
  private readonly decoder: HpackDecoder;
  private readonly encoder: HpackEncoder;
  private readonly frame: FrameHeader = { length: 0, type: 0, flags: 0, stream: 0 };
  /** Header block in assembly (HEADERS without END_HEADERS, then CONTINUATION): its stream, or 0. */
  private blockStream = 0;
  private blockFlags = 0;
  private block: Buffer | null = null;
  private blockLength = 0;
  private continuations = 0;
  /** Streams whose output waits for a window, in the order they blocked. */
  private blocked: Http2Stream[] = [];
  /** Streams waiting in `drain()` for the connection to take more. */
  private draining: Http2Stream[] | null = null;
  private processing = false;
  /** Loop clock when our SETTINGS went out unacknowledged (0: none pending). */
  private settingsSentAt = 0;
  /** Loop clock of the last stream ending (the idle timeout counts from it). */
  private idleSince: number;
  private readonly openedAt: number;
  private readonly resets: Budget;
  private readonly junk: Budget;
  /** The peer sent GOAWAY. */
  private peerGoaway = false;
  /** DATA went out since the peer's last connection-level WINDOW_UPDATE (one without it is junk). */
  private sentData = false;
  private acked = false;
  /** The client ended its side (FIN): streams in progress are answered (`clientHalfClose: 'serve'`). */
  private peerEnded = false;
  private goawayLast = 0;

  constructor(conn: Conn, core: Http2Core) {
    this.conn = conn;
    this.core = core;
    const now = conn.loop.clock;
    this.settings = {
      ...defaultSettings(),
      enablePush: false,
      maxConcurrentStreams: core.maxConcurrentStreams,
      initialWindowSize: core.initialWindowSize,
      maxFrameSize: core.maxFrameSize,
      maxHeaderListSize: core.maxHeaderListSize,
    };
    this.sendWindow = new FlowWindow(0, 65_535, 65_535);
    this.recvWindow = new FlowWindow(0, 0, core.connectionWindowSize);
    this.decoder = new HpackDecoder({ maxTableSize: 4096, maxHeaderListSize: core.maxHeaderListSize });
    this.encoder = new HpackEncoder();
    this.idleSince = this.openedAt = now;
    this.resets = new Budget(core.maxResetsBurst, core.maxResetsPerSecond, now);
    this.junk = new Budget(core.maxControlFramesBurst, core.maxControlFramesPerSecond, now);
    conn.context = this;
    this.sendPreface();
    conn.setDeadline(core.sweepInterval);
  }

  /** The client acknowledged our SETTINGS (until then it may use the defaults, §6.9.2). */
  get settingsAcked(): boolean {
    return this.acked;
  }

  /** A GOAWAY went out: no new streams. */
  get goingAway(): boolean {
    return this.state >= DRAINING;
  }

  // ---- start -----------------------------------------------------------------------------------------

  private sendPreface(): void {
    const s = this.settings;
    const pairs: [number, number][] = [
      [SETTINGS_MAX_CONCURRENT_STREAMS, s.maxConcurrentStreams],
      [SETTINGS_HEADER_TABLE_SIZE, 4096],
      [SETTINGS_MAX_HEADER_LIST_SIZE, s.maxHeaderListSize],
    ];
    if (s.initialWindowSize !== 65_535) pairs.push([SETTINGS_INITIAL_WINDOW_SIZE, s.initialWindowSize]);
    if (s.maxFrameSize !== 16_384) pairs.push([SETTINGS_MAX_FRAME_SIZE, s.maxFrameSize]);
    const conn = this.conn;
    const buf = conn.reserve(FRAME_HEADER + pairs.length * 6 + FRAME_HEADER + 4 + 8);
    let p = writeFrameHeader(buf, conn.reservedAt, pairs.length * 6, SETTINGS, 0, 0);
    // `enablePush: 2` is SETTINGS_ENABLE_PUSH = 0 (a server never pushes; it says nothing of it).
    for (const [id, value] of pairs) {
      buf[p] = id >>> 8;
      buf[p + 1] = id & 0xff;
      buf.writeUInt32BE(value, p + 2);
      p += 6;
    }
    const extra = this.core.connectionWindowSize - 65_535;
    if (extra > 0) {
      p = writeFrameHeader(buf, p, 4, WINDOW_UPDATE, 0, 0);
      buf.writeUInt32BE(extra, p);
      p += 4;
    }
    conn.commit(p);
    this.settingsSentAt = conn.loop.clock || 1;
  }

  // ---- reading ---------------------------------------------------------------------------------------

  /** Reads every complete frame buffered. */
  process(): void {
    if (this.processing) return;
    this.processing = true;
    try {
      this.readFrames();
    } catch (err) {
      if (err instanceof Http2Error) this.connectionError(err.code, err.message);
      else throw err;
    } finally {
      this.processing = false;
    }
  }

  private readFrames(): void {
    const conn = this.conn;
    const h = this.frame;
    while (this.state < DONE && !conn.closed) {
      const avail = conn.inboundBuffered;
      const buf = conn.buffer;
      const off = conn.offset;
      if (this.state === PREFACE_WAIT) {
        const n = Math.min(avail, PREFACE.length);
        for (let i = 0; i < n; i++) {
          if (buf[off + i] !== PREFACE[i])
            throw new Http2Error(PROTOCOL_ERROR, 'not the HTTP/2 connection preface');
        }
        if (n < PREFACE.length) return;
        conn.discard(PREFACE.length);
        this.state = FIRST_SETTINGS;
        continue;
      }
      if (avail < FRAME_HEADER) return;
      readFrameHeader(buf, off, h);
      // Never buffer past our frame size (§4.2); smaller frames are judged once whole, so that a stream
      // error can skip exactly the frame it is about.
      if (h.length > this.settings.maxFrameSize)
        throw new Http2Error(
          FRAME_SIZE_ERROR,
          `a frame of ${h.length} octets, over ${this.settings.maxFrameSize}`,
        );
      if (avail < FRAME_HEADER + h.length) return;
      const start = off + FRAME_HEADER;
      try {
        checkFrame(h, this.settings.maxFrameSize);
        this.dispatch(h, buf, start);
      } catch (err) {
        if (!(err instanceof Http2Error) || err.stream === 0) throw err;
        // An idle stream cannot be reset (§5.1): a stream error there, but on the HEADERS that opens it, is
        // the connection's.
        if (err.stream > this.lastStreamId && h.type !== HEADERS && !this.streams.has(err.stream))
          throw new Http2Error(err.code, err.message);
        this.streamError(err.stream, err.code, err.message);
      }
      conn.discard(FRAME_HEADER + h.length);
    }
  }

  private dispatch(h: FrameHeader, buf: Buffer, p: number): void {
    if (this.state === FIRST_SETTINGS) {
      if (h.type !== SETTINGS || (h.flags & ACK) !== 0)
        throw new Http2Error(PROTOCOL_ERROR, `a ${typeName(h.type)} frame before the client's SETTINGS`);
      this.state = ACTIVE;
    }
    if (this.blockStream !== 0 && (h.type !== CONTINUATION || h.stream !== this.blockStream)) {
      throw new Http2Error(PROTOCOL_ERROR, `a ${typeName(h.type)} frame inside a header block (§6.10)`);
    }
    switch (h.type) {
      case DATA:
        this.onData(h, buf, p);
        return;
      case HEADERS:
        this.onHeaders(h, buf, p);
        return;
      case CONTINUATION:
        this.onContinuation(h, buf, p);
        return;
      case PRIORITY:
        this.calm();
        if (readStreamId(buf, p) === h.stream) {
          // A stream error needs a stream to reset: an idle one cannot be (§5.1), so that is the connection's.
          const idle = h.stream > this.lastStreamId && !this.streams.has(h.stream);
          throw new Http2Error(PROTOCOL_ERROR, `stream ${h.stream} depends on itself`, idle ? 0 : h.stream);
        }
        return;
      case RST_STREAM:
        this.onRstStream(h, buf, p);
        return;
      case SETTINGS:
        this.onSettings(h, buf, p);
        return;
      case PING:
        this.calm();
        if ((h.flags & ACK) !== 0) return; // we send no PING: an acknowledgement is junk
        this.control(PING, ACK, 0, buf, p, 8);
        return;
      case GOAWAY:
        this.onGoaway(buf, p);
        return;
      case WINDOW_UPDATE:
        this.onWindowUpdate(h, buf, p);
        return;
      default:
        this.calm(); // unknown types are ignored (§5.5), but they are not free
    }
  }

  /** One more frame that does no work for the peer: past the budget, GOAWAY ENHANCE_YOUR_CALM. */
  private calm(): void {
    if (!this.junk.take(this.conn.loop.clock))
      throw new Http2Error(ENHANCE_YOUR_CALM, 'too many control frames (a flood)');
  }

  private onSettings(h: FrameHeader, buf: Buffer, p: number): void {
    if ((h.flags & ACK) !== 0) {
      if (this.settingsSentAt === 0) this.calm(); // an acknowledgement of nothing we sent
      this.settingsSentAt = 0;
      this.acked = true;
      return;
    }
    this.calm();
    const peer = this.peer;
    const oldWindow = peer.initialWindowSize;
    const oldTable = peer.headerTableSize;
    applySettings(buf, p, h.length, peer);
    if (peer.headerTableSize !== oldTable) this.encoder.setMaxTableSize(Math.min(peer.headerTableSize, 4096));
    const delta = peer.initialWindowSize - oldWindow;
    if (delta !== 0) {
      for (const s of this.streams.values()) s.sendWindow.onInitialWindowChange(delta);
    }
    this.control(SETTINGS, ACK, 0, buf, p, 0);
    if (delta > 0) this.flushBlocked();
  }

  private onGoaway(buf: Buffer, p: number): void {
    this.peerGoaway = true;
    const code = buf.readUInt32BE(p + 4);
    if (code !== NO_ERROR) {
      this.close(streamClosedError('the client sent GOAWAY with an error'));
      return;
    }
    if (this.streams.size === 0) this.close();
  }

  private onWindowUpdate(h: FrameHeader, buf: Buffer, p: number): void {
    const increment = buf.readUInt32BE(p) & 0x7fffffff;
    if (h.stream === 0) {
      if (!this.sentData) this.calm(); // an update for nothing we sent
      this.sentData = false;
      this.sendWindow.onWindowUpdate(increment);
      this.flushBlocked();
      return;
    }
    const s = this.streams.get(h.stream);
    if (s === undefined) {
      if (h.stream > this.lastStreamId)
        throw new Http2Error(PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${h.stream}`);
      this.calm(); // a closed stream: updates in flight are allowed, and budgeted
      return;
    }
    // Nothing of the window was in use, or a dribble of tiny updates (each would make a tiny DATA frame).
    if (s.sendWindow.send >= this.peer.initialWindowSize || increment < 1024) this.calm();
    s.sendWindow.onWindowUpdate(increment);
    if (s.outBytes > 0 || s.outEnd) this.flushStream(s);
  }

  private onRstStream(h: FrameHeader, buf: Buffer, p: number): void {
    const s = this.streams.get(h.stream);
    if (s === undefined) {
      if (h.stream > this.lastStreamId)
        throw new Http2Error(PROTOCOL_ERROR, `RST_STREAM on idle stream ${h.stream}`);
      this.calm();
      return;
    }
    const code = buf.readUInt32BE(p);
    const cancelled = !s.res.finished;
    this.forget(s, CLOSED_BY_PEER);
    s.abort(
      streamClosedError(`the client reset the stream (${code === CANCEL ? 'CANCEL' : `code ${code}`})`),
    );
    // Rapid reset (CVE-2023-44487): streams opened and cancelled faster than they finish.
    if (cancelled && !this.resets.take(this.conn.loop.clock))
      throw new Http2Error(ENHANCE_YOUR_CALM, 'too many streams reset by the client');
  }

  // ---- DATA ------------------------------------------------------------------------------------------

  private onData(h: FrameHeader, buf: Buffer, p: number): void {
    let start = p;
    let end = p + h.length;
    if ((h.flags & PADDED) !== 0) {
      if (h.length === 0)
        throw new Http2Error(FRAME_SIZE_ERROR, 'a padded DATA frame without its pad length');
      const pad = buf[p]!;
      if (pad >= h.length) throw new Http2Error(PROTOCOL_ERROR, 'DATA padding as long as the frame');
      start = p + 1;
      end -= pad;
    }
    // The whole frame counts against the connection's window, whatever becomes of the stream (§6.9).
    this.recvWindow.onData(h.length);
    const endStream = (h.flags & END_STREAM) !== 0;
    const s = this.streams.get(h.stream);
    if (s === undefined) {
      this.giveBack(h.length);
      this.frameOnClosed(h.stream, DATA);
      return;
    }
    if (s.state === HALF_CLOSED_REMOTE || s.state === CLOSED) {
      this.giveBack(h.length);
      onReceive(s.state, DATA, endStream, s.id); // throws STREAM_CLOSED
      return;
    }
    // A frame refused below is never delivered: the connection's window gets its octets back at once.
    try {
      s.recvWindow.onData(h.length);
    } catch (err) {
      this.giveBack(h.length);
      throw err;
    }
    s.lastActive = this.conn.loop.clock;
    if (end === start && !endStream) this.calm();
    const length = s.head.contentLength;
    if (length >= 0 && s.received + (end - start) > length) {
      this.giveBack(h.length);
      throw new Http2Error(PROTOCOL_ERROR, 'more DATA than content-length', s.id);
    }
    if (s.received + (end - start) > this.core.maxBodySize) {
      this.giveBack(h.length);
      this.refuseBody(s, 413, 'body too large');
      return;
    }
    const padding = h.length - (end - start);
    if (padding > 0) this.consumed(s, padding);
    s.onData(buf.subarray(start, end));
    if (endStream) {
      s.state = onReceive(s.state, DATA, true, s.id);
      if (length >= 0 && s.received !== length)
        throw new Http2Error(PROTOCOL_ERROR, 'less DATA than content-length', s.id);
      this.remoteEnded(s, []);
    }
  }

  /** The handler consumed `n` octets of `s`'s body: give the windows back as they reach half. */
  consumed(s: Http2Stream, n: number): void {
    this.giveBack(n);
    if (s.bodyEnded || !s.live) return;
    const increment = s.recvWindow.consume(n);
    if (increment > 0) this.windowUpdate(s.id, increment);
  }

  private giveBack(n: number): void {
    const increment = this.recvWindow.consume(n);
    if (increment > 0) this.windowUpdate(0, increment);
  }

  /** A frame for a stream not in the map: idle (a connection error) or closed (ignored or STREAM_CLOSED). */
  private frameOnClosed(id: number, type: number): void {
    if (id > this.lastStreamId) onReceive(IDLE, type, false, id); // throws PROTOCOL_ERROR
    const how = this.closedState(id);
    if (how === CLOSED_BY_US) return;
    if (this.state === DRAINING && id > this.goawayLast) return; // a stream we never processed
    throw new Http2Error(STREAM_CLOSED, `a ${typeName(type)} frame on closed stream ${id}`, id);
  }

  // ---- HEADERS and CONTINUATION -----------------------------------------------------------------------

  private onHeaders(h: FrameHeader, buf: Buffer, p: number): void {
    let start = p;
    let end = p + h.length;
    if ((h.flags & PADDED) !== 0) {
      if (h.length === 0)
        throw new Http2Error(FRAME_SIZE_ERROR, 'a padded HEADERS frame without its pad length');
      const pad = buf[p]!;
      start++;
      if (pad > end - start) throw new Http2Error(PROTOCOL_ERROR, 'HEADERS padding longer than the frame');
      end -= pad;
    }
    if ((h.flags & PRIORITY_FLAG) !== 0) {
      if (end - start < 5) throw new Http2Error(FRAME_SIZE_ERROR, 'HEADERS too short for its priority');
      if (readStreamId(buf, start) === h.stream) {
        this.skipBlock(h, buf, start + 5, end);
        throw new Http2Error(PROTOCOL_ERROR, `stream ${h.stream} depends on itself`, h.stream);
      }
      start += 5;
    }
    const existing = this.streams.get(h.stream);
    if (existing === undefined) {
      if (h.stream % 2 === 0)
        throw new Http2Error(PROTOCOL_ERROR, `a client stream with even id ${h.stream}`);
      if (h.stream <= this.lastStreamId) {
        const how = this.closedState(h.stream);
        if (how === 0)
          throw new Http2Error(PROTOCOL_ERROR, `stream id ${h.stream} is not above ${this.lastStreamId}`);
        if (how !== CLOSED_BY_US) throw new Http2Error(STREAM_CLOSED, `HEADERS on closed stream ${h.stream}`);
      }
    }
    if (h.length === 0 || end === start) this.calm();
    if ((h.flags & END_HEADERS) !== 0) {
      this.headerBlock(h.stream, h.flags, buf, start, end);
      return;
    }
    this.blockStream = h.stream;
    this.blockFlags = h.flags;
    this.blockLength = 0;
    this.continuations = 0;
    this.appendBlock(buf, start, end);
  }

  /** A HEADERS frame refused before its block was decoded: the block still goes through the decoder. */
  private skipBlock(h: FrameHeader, buf: Buffer, start: number, end: number): void {
    if ((h.flags & END_HEADERS) === 0)
      throw new Http2Error(PROTOCOL_ERROR, `stream ${h.stream} depends on itself`); // no way to stay in step
    try {
      this.decoder.decode(buf, start, end);
    } catch (err) {
      if (!(err instanceof HeaderListTooLarge))
        throw new Http2Error(COMPRESSION_ERROR, (err as Error).message);
    }
  }

  private onContinuation(h: FrameHeader, buf: Buffer, p: number): void {
    if (this.blockStream === 0)
      throw new Http2Error(PROTOCOL_ERROR, 'a CONTINUATION frame outside a header block');
    if (++this.continuations > this.core.maxContinuations)
      throw new Http2Error(
        ENHANCE_YOUR_CALM,
        `more than ${this.core.maxContinuations} CONTINUATION frames in one block`,
      );
    this.appendBlock(buf, p, p + h.length);
    if ((h.flags & END_HEADERS) === 0) return;
    const id = this.blockStream;
    this.blockStream = 0;
    const block = this.block!;
    const length = this.blockLength;
    this.headerBlock(id, this.blockFlags, block, 0, length);
    if (block.length > 16_384) this.block = null; // a big block does not stay pinned
  }

  /** Copies a fragment of a header block, bounded before it is buffered (CONTINUATION floods). */
  private appendBlock(buf: Buffer, start: number, end: number): void {
    const n = end - start;
    if (this.blockLength + n > this.core.maxHeaderBlockSize)
      throw new Http2Error(ENHANCE_YOUR_CALM, `a header block over ${this.core.maxHeaderBlockSize} octets`);
    let block = this.block;
    if (block === null || block.length < this.blockLength + n) {
      const grown = Buffer.allocUnsafe(Math.max(4096, (this.blockLength + n) * 2));
      if (block !== null) block.copy(grown, 0, 0, this.blockLength);
      block = this.block = grown;
    }
    buf.copy(block, this.blockLength, start, end);
    this.blockLength += n;
  }

  /** A whole header block for stream `id`: a request's head, or its trailers. */
  private headerBlock(id: number, flags: number, buf: Buffer, start: number, end: number): void {
    let fields: ReturnType<HpackDecoder['decode']>;
    let tooLarge = false;
    try {
      fields = this.decoder.decode(buf, start, end);
    } catch (err) {
      if (!(err instanceof HeaderListTooLarge)) {
        throw new Http2Error(COMPRESSION_ERROR, err instanceof HpackError ? err.message : String(err));
      }
      fields = [];
      tooLarge = true;
    }
    const endStream = (flags & END_STREAM) !== 0;
    const existing = this.streams.get(id);
    if (existing !== undefined) {
      // Decoded first, whatever the verdict: the decoder must stay in step with the peer's encoder.
      if (existing.state === HALF_CLOSED_REMOTE)
        throw new Http2Error(STREAM_CLOSED, `HEADERS after END_STREAM on stream ${id}`, id);
      this.trailerBlock(existing, fields, endStream, tooLarge);
      return;
    }
    if (id <= this.lastStreamId) return; // a stream we reset: the block kept the decoder in step
    this.lastStreamId = id;
    if (this.state === DRAINING) return; // opened after our GOAWAY: not processed (the client may retry)
    if (this.active >= this.settings.maxConcurrentStreams) {
      // Past the limit we advertised: refused, and counted like a reset (rapid reset keeps opening here).
      this.refuseStream(id, REFUSED_STREAM);
      if (!this.resets.take(this.conn.loop.clock))
        throw new Http2Error(ENHANCE_YOUR_CALM, 'too many streams past the concurrency limit');
      return;
    }
    const head: RequestHead = {
      method: '',
      scheme: '',
      authority: '',
      path: '',
      names: EMPTY_NAMES,
      values: EMPTY_NAMES,
      contentLength: -1,
      expectContinue: false,
      expectOther: false,
    };
    const malformed = tooLarge ? null : checkRequest(fields, head);
    if (malformed !== null) throw new Http2Error(PROTOCOL_ERROR, `malformed request: ${malformed}`, id);
    if (tooLarge) head.method = 'GET';
    const startedAt = this.core.timing ? performance.now() : this.conn.loop.now();
    const s = new Http2Stream(this, id, head, endStream, startedAt);
    this.streams.set(id, s);
    this.active++;
    this.conn.busy = true;
    if (tooLarge) {
      this.errorAnswer(s, 431, 'request header fields too large');
      return;
    }
    if (head.contentLength > this.core.maxBodySize) {
      this.errorAnswer(s, 413, 'body too large');
      return;
    }
    if (head.expectOther) {
      this.errorAnswer(s, 417, 'unsupported expectation');
      return;
    }
    if (endStream && head.contentLength > 0)
      throw new Http2Error(PROTOCOL_ERROR, 'content-length with no DATA', id);
    this.runHandler(s);
  }

  private trailerBlock(
    s: Http2Stream,
    fields: ReturnType<HpackDecoder['decode']>,
    endStream: boolean,
    tooLarge: boolean,
  ): void {
    if (!endStream) throw new Http2Error(PROTOCOL_ERROR, 'a second HEADERS without END_STREAM', s.id);
    if (tooLarge) throw new Http2Error(PROTOCOL_ERROR, 'trailers over the header list limit', s.id);
    const trailers: [string, string][] = [];
    const malformed = checkTrailers(fields, trailers);
    if (malformed !== null) throw new Http2Error(PROTOCOL_ERROR, `malformed trailers: ${malformed}`, s.id);
    s.state = onReceive(s.state, HEADERS, true, s.id);
    const length = s.head.contentLength;
    if (length >= 0 && s.received !== length)
      throw new Http2Error(PROTOCOL_ERROR, 'less DATA than content-length', s.id);
    this.remoteEnded(s, trailers);
  }

  /** The request side ended (END_STREAM). */
  private remoteEnded(s: Http2Stream, trailers: readonly [string, string][]): void {
    s.onBodyEnd(trailers);
    if (s.state === CLOSED) this.streamDone(s);
  }

  // ---- the handler -------------------------------------------------------------------------------------

  private runHandler(s: Http2Stream): void {
    s.probeStart();
    try {
      const result = this.core.handler(s.req, s.res);
      if (result !== undefined && typeof (result as Promise<void>).then === 'function') {
        s.handlerBusy = true;
        (result as Promise<void>).then(
          () => this.handlerSettled(s),
          (err: unknown) => {
            this.handlerSettled(s);
            this.handlerFailed(s, err);
          },
        );
      }
    } catch (err) {
      this.handlerFailed(s, err);
    }
  }

  private handlerSettled(s: Http2Stream): void {
    s.handlerBusy = false;
    if (s.zombie) {
      s.zombie = false;
      this.releaseSlot();
    }
  }

  /** A body consumer threw: the stream fails as if its handler had. */
  consumerFailed(s: Http2Stream, err: unknown): void {
    this.handlerFailed(s, err);
  }

  /** An interim 100 (Continue) for a request that asked for it, once its handler reads the body. */
  sendContinue(s: Http2Stream): void {
    const enc = this.encoder;
    enc.begin();
    enc.add(':status', '100');
    this.writeBlock(s.id, enc.finish(), false);
  }

  private handlerFailed(s: Http2Stream, err: unknown): void {
    let status = err instanceof HttpError ? err.status : 500;
    if (status < 400 || status > 599 || !Number.isInteger(status)) status = 500;
    const closed = err instanceof HttpError && err.code === 'ERR_HTTP_CLOSED';
    if (status >= 500 && !closed)
      this.conn.loop.log.error('http2 handler failed', { stream: s.id, error: err });
    const res = s.res;
    if (res.finished || s.abortedWith !== null || this.conn.closed) return;
    if (res.headersSent) {
      this.failResponse(s);
      return;
    }
    const reason = err instanceof HttpError && status < 500 ? err.message : (STATUS_TEXT[status] ?? 'error');
    this.errorAnswer(s, status, reason);
  }

  /** Answers `s` with an error status in the handler's place. */
  private errorAnswer(s: Http2Stream, status: number, reason: string): void {
    const res = s.res;
    if (res.headersSent || res.finished) {
      this.failResponse(s);
      return;
    }
    res.reset();
    const body = `${status} ${STATUS_TEXT[status] ?? ''}: ${reason}\n`;
    res.status(status).header('content-type', 'text/plain; charset=utf-8');
    // The server answered in the handler's place: a handler still at work hears the request is over.
    const handlerTold = new HttpError(status, reason);
    res.end(body);
    s.tellAbandoned(handlerTold, true);
  }

  /** The request body passed a limit while arriving: answer it, stop reading the rest. */
  private refuseBody(s: Http2Stream, status: number, reason: string): void {
    s.bodyFailed(new HttpError(status, reason));
    this.errorAnswer(s, status, reason);
  }

  /** A response that cannot complete (a handler error mid-body, a length mismatch): reset the stream. */
  failResponse(s: Http2Stream): void {
    if (!s.live) return;
    this.resetStream(s, INTERNAL_ERROR);
  }

  // ---- writing ---------------------------------------------------------------------------------------

  /** Writes a control frame with `length` octets of payload copied from `src[from..]`. */
  private control(
    type: number,
    flags: number,
    stream: number,
    src: Buffer,
    from: number,
    length: number,
  ): void {
    // A client that does not read what its PINGs and SETTINGS make us write is not read either: the engine
    // stops reading a connection above its high-water mark, so these answers stay bounded.
    const conn = this.conn;
    const buf = conn.reserve(FRAME_HEADER + length);
    const p = writeFrameHeader(buf, conn.reservedAt, length, type, flags, stream);
    if (length > 0) src.copy(buf, p, from, from + length);
    conn.commit(p + length);
  }

  private windowUpdate(stream: number, increment: number): void {
    writeWindowUpdate(this.conn, stream, increment);
  }

  /** The response head of `s`. `length` >= 0 is sent as content-length. */
  writeHeaders(s: Http2Stream, status: number, length: number, endStream: boolean): void {
    const enc = this.encoder;
    enc.begin();
    enc.add(':status', STATUS_STRINGS[status] ?? String(status));
    const names = s.resNames;
    const values = s.resValues;
    let hasDate = false;
    for (let k = 0; k < names.length; k++) {
      const name = names[k]!;
      if (connectionSpecific(name)) continue;
      if (name === 'date') hasDate = true;
      enc.add(name, values[k]!);
    }
    if (!hasDate) enc.add('date', currentDate());
    if (length >= 0) enc.add('content-length', length < 10 ? DIGITS[length]! : String(length));
    this.writeBlock(s.id, enc.finish(), endStream);
    if (endStream) this.endSent(s);
  }

  /** The trailers of `s`, with END_STREAM. */
  sendTrailers(s: Http2Stream): void {
    if (s.outBytes > 0) {
      s.outEnd = true; // after the queued body (flushStream sends them)
      return;
    }
    const enc = this.encoder;
    enc.begin();
    for (const [name, value] of s.resTrailers!) if (!connectionSpecific(name)) enc.add(name, value);
    this.writeBlock(s.id, enc.finish(), true);
    this.endSent(s);
  }

  /** A header block as HEADERS and as many CONTINUATION frames as the peer's frame size needs. */
  private writeBlock(id: number, block: Buffer, endStream: boolean): void {
    writeHeaderBlock(this.conn, id, block, endStream, this.peer.maxFrameSize);
  }

  /**
   * Body bytes of `s` (`end`: END_STREAM after them): sent within the windows and the peer's frame size, the
   * rest queued (copied) until WINDOW_UPDATE.
   */
  sendData(s: Http2Stream, data: Uint8Array, end: boolean): void {
    if (!s.live) return;
    if (s.outBytes > 0) {
      if (data.byteLength > 0) s.enqueue(data, 0);
      if (end) s.outEnd = true;
      return;
    }
    const sent = this.dataFrames(s, data, 0, end);
    if (sent < data.byteLength || (end && sent === data.byteLength && s.outEnd)) {
      if (sent < data.byteLength) s.enqueue(data, sent);
      if (end) s.outEnd = true;
      this.blockStreamOutput(s);
    }
  }

  /** Writes DATA frames of `data[from..]` while windows allow; returns how far it got. */
  private dataFrames(s: Http2Stream, data: Uint8Array, from: number, end: boolean): number {
    const conn = this.conn;
    const total = data.byteLength;
    const max = this.peer.maxFrameSize;
    let p = from;
    while (p < total) {
      const room = Math.min(s.sendWindow.send, this.sendWindow.send, max);
      if (room <= 0) return p;
      const n = Math.min(room, total - p);
      const last = end && p + n === total && s.resTrailers === null;
      const buf = conn.reserve(FRAME_HEADER + (n < 4096 ? n : 0));
      const q = writeFrameHeader(buf, conn.reservedAt, n, DATA, last ? END_STREAM : 0, s.id);
      if (n < 4096) {
        buf.set(p === 0 && n === total ? data : data.subarray(p, p + n), q);
        conn.commit(q + n);
      } else {
        conn.commit(q);
        conn.write(data.subarray(p, p + n));
      }
      s.sendWindow.sent(n);
      this.sendWindow.sent(n);
      this.sentData = true;
      p += n;
      if (last) this.endSent(s);
    }
    if (total === from && end && s.resTrailers === null) {
      // An empty end: a DATA frame with END_STREAM alone (windows do not apply to 0 octets).
      const buf = conn.reserve(FRAME_HEADER);
      conn.commit(writeFrameHeader(buf, conn.reservedAt, 0, DATA, END_STREAM, s.id));
      this.endSent(s);
    }
    return p;
  }

  private blockStreamOutput(s: Http2Stream): void {
    if (s.blockedSince === 0) s.blockedSince = this.conn.loop.clock || 1;
    if (s.queued) return;
    s.queued = true;
    this.blocked.push(s);
  }

  /** A window opened: blocked streams send what they can, oldest first. */
  private flushBlocked(): void {
    const list = this.blocked;
    if (list.length === 0) return;
    this.blocked = [];
    for (const s of list) {
      s.queued = false;
      this.flushStream(s);
    }
  }

  private flushStream(s: Http2Stream): void {
    if (!s.live) return;
    const queue = s.outQueue;
    while (queue !== null && queue.length > 0) {
      const chunk = queue[0]!;
      const last = queue.length === 1 && s.outEnd;
      const sent = this.dataFrames(s, chunk, 0, last);
      s.outBytes -= sent;
      if (sent < chunk.length) {
        queue[0] = chunk.subarray(sent);
        this.blockStreamOutput(s);
        return;
      }
      queue.shift();
    }
    s.outQueue = null;
    s.blockedSince = 0;
    if (s.queued) {
      s.queued = false;
      const i = this.blocked.indexOf(s);
      if (i !== -1) this.blocked.splice(i, 1);
    }
    if (s.outEnd && s.live && s.state !== HALF_CLOSED_LOCAL) {
      s.outEnd = false;
      if (s.resTrailers !== null) this.sendTrailers(s);
      else if (s.res.finished) this.dataFrames(s, EMPTY, 0, true);
    }
    if (s.waitsForDrain) this.watchDrain(s);
  }

  /** Whether `s` may write more now (nothing queued for a window, the connection below its high-water mark). */
  canWrite(s: Http2Stream): boolean {
    return s.outBytes === 0 && this.conn.outboundBuffered < this.conn.loop.options.highWaterMark;
  }

  /** `s` waits in `drain()`: settle it now if it can go on, else when a window or the socket opens. */
  watchDrain(s: Http2Stream): void {
    if (s.outBytes > 0) return; // flushStream calls again
    if (this.conn.whenWritable()) {
      const conn = this.conn;
      setImmediate(() => s.settleDrain(conn.closed ? streamClosedError() : null));
      return;
    }
    this.draining ??= [];
    this.draining.push(s);
  }

  /** The connection's outbound bytes fell to the low-water mark. */
  onWritable(): void {
    const list = this.draining;
    if (list === null) return;
    this.draining = null;
    for (const s of list) if (s.outBytes === 0) s.settleDrain(null);
  }

  /** We sent END_STREAM on `s`. */
  private endSent(s: Http2Stream): void {
    s.sentEnd();
    s.probeFinish();
    if (s.state === HALF_CLOSED_LOCAL) {
      // The response is complete before the request (§8.1): the client may stop sending.
      s.dropBody();
      this.resetStream(s, NO_ERROR);
      return;
    }
    if (s.state === CLOSED) this.streamDone(s);
  }

  /** The handler's response ended (its last frame may still wait for a window). */
  responseEnded(s: Http2Stream): void {
    const hook = this.core.onResponse;
    if (hook !== undefined) {
      try {
        hook(s.req, s.res, s);
      } catch (err) {
        this.conn.loop.log.error('http onResponse hook threw', { conn: this.conn.id, error: err });
      }
    }
  }

  // ---- streams ending ----------------------------------------------------------------------------------

  private streamDone(s: Http2Stream): void {
    if (!this.streams.has(s.id)) return;
    this.forget(s, CLOSED_NORMAL);
  }

  /** Takes `s` out of the connection (closed: normally, reset by us, or by the peer). */
  private forget(s: Http2Stream, how: number): void {
    if (!this.streams.delete(s.id)) return;
    s.state = CLOSED;
    this.closedStreams.remember(s.id, how);
    if (s.queued) {
      s.queued = false;
      const i = this.blocked.indexOf(s);
      if (i !== -1) this.blocked.splice(i, 1);
    }
    // Give back what its queued body held of the connection's window.
    const held = s.queuedBody;
    if (held > 0) this.giveBack(held);
    // A reset stream whose handler still runs keeps its slot (the work of cancelled streams is bounded).
    if (how !== CLOSED_NORMAL && s.handlerBusy && !s.res.finished) s.zombie = true;
    else this.releaseSlot();
    this.idleSince = this.conn.loop.clock;
    if (this.streams.size === 0 && (this.state === DRAINING || this.peerGoaway || this.peerEnded))
      this.close();
  }

  private releaseSlot(): void {
    this.active--;
    if (this.active === 0 && this.streams.size === 0) this.conn.busy = false;
  }

  /** Resets `s` with `code` (RST_STREAM) and tells its handler. */
  resetStream(s: Http2Stream, code: number): void {
    if (!this.streams.has(s.id)) return;
    writeRstStream(this.conn, s.id, code);
    this.forget(s, CLOSED_BY_US);
    if (code !== NO_ERROR || !s.res.finished) s.abort(streamClosedError('the stream was reset'));
  }

  /** A stream error on `id` (which may not be open): RST_STREAM, and the stream is gone. */
  private streamError(id: number, code: number, message: string): void {
    const s = this.streams.get(id);
    if (s !== undefined) {
      if (s.res.finished === false)
        this.conn.loop.log.debug?.('http2 stream error', { stream: id, code, message });
      this.resetStream(s, code);
    } else {
      this.refuseStream(id, code);
    }
    // Each refused or broken stream counts like a reset: a peer cannot make us do this without bound.
    if (!this.resets.take(this.conn.loop.clock))
      throw new Http2Error(ENHANCE_YOUR_CALM, 'too many stream errors');
  }

  /** RST_STREAM for a stream that never ran. */
  private refuseStream(id: number, code: number): void {
    writeRstStream(this.conn, id, code);
    if (id > this.lastStreamId) this.lastStreamId = id;
    this.closedStreams.remember(id, CLOSED_BY_US);
  }

  private closedState(id: number): number {
    return this.closedStreams.howClosed(id);
  }

  // ---- ending the connection ---------------------------------------------------------------------------

  /** A connection error: GOAWAY with `code`, then close. */
  connectionError(code: number, message: string): void {
    if (this.state === DONE) return;
    this.writeGoaway(code, message);
    this.close(new HttpError(400, `HTTP/2 connection error: ${message}`, 'ERR_HTTP2_PROTOCOL'));
  }

  /** Graceful shutdown: GOAWAY NO_ERROR; streams already open run to their end. */
  goaway(): void {
    if (this.state >= DRAINING) return;
    this.writeGoaway(NO_ERROR, '');
    this.state = DRAINING;
    if (this.streams.size === 0) this.close();
  }

  private writeGoaway(code: number, message: string): void {
    writeGoaway(this.conn, this.lastStreamId, code, message);
    this.goawayLast = this.lastStreamId;
  }

  private close(err?: Error): void {
    if (this.state === DONE) return;
    this.state = DONE;
    this.conn.close(err);
  }

  /** The connection is gone: every stream still running hears so. */
  onClosed(err: Error | undefined): void {
    this.state = DONE;
    const reason = streamClosedError('the connection closed');
    if (err !== undefined) (reason as { cause?: unknown }).cause = err;
    for (const s of this.streams.values()) {
      s.state = CLOSED;
      s.abort(reason);
    }
    this.streams.clear();
    this.blocked = [];
    const draining = this.draining;
    this.draining = null;
    if (draining !== null) for (const s of draining) s.settleDrain(reason);
  }

  /**
   * The client ended its side (FIN): no more frames. With `clientHalfClose: 'serve'` (the default) streams
   * whose requests are whole are still answered, and the connection closes after them; a body cut short
   * gets 400. With `'abort'` the client is taken as gone (every stream aborts, as over HTTP/1.1).
   */
  onEof(): void {
    this.peerEnded = true;
    if (this.core.clientHalfClose === 'abort' || this.streams.size === 0) {
      this.close();
      return;
    }
    for (const s of [...this.streams.values()]) {
      if (s.bodyEnded) continue;
      s.bodyFailed(new HttpError(400, 'client closed before the body was complete'));
      if (s.res.headersSent) this.resetStream(s, CANCEL);
      else this.errorAnswer(s, 400, 'client closed before the body was complete');
    }
  }

  // ---- timers ----------------------------------------------------------------------------------------

  /** The sweep: SETTINGS acknowledgement, idle connection, idle and stalled streams. */
  onDeadline(): void {
    if (this.state === DONE) return;
    const now = this.conn.loop.clock;
    const core = this.core;
    if (this.state === PREFACE_WAIT || this.state === FIRST_SETTINGS) {
      if (now - this.openedAt >= core.headersTimeout) {
        this.close();
        return;
      }
    } else if (this.settingsSentAt !== 0 && now - this.settingsSentAt >= core.settingsTimeout) {
      this.connectionError(SETTINGS_TIMEOUT, 'our SETTINGS were not acknowledged');
      return;
    }
    if (this.streams.size === 0) {
      if (now - this.idleSince >= core.idleTimeout) {
        this.goaway();
        this.close();
        return;
      }
    } else {
      for (const s of [...this.streams.values()]) {
        if (s.blockedSince !== 0 && now - s.blockedSince >= core.sendTimeout) {
          // A peer that keeps the window shut holds our memory: the stream goes.
          this.resetStream(s, CANCEL);
        } else if (s.waitsForReader || this.recvWindow.receive === 0 || s.recvWindow.receive === 0) {
          s.lastActive = now; // the body waits on us, not on the client: its clock starts again
        } else if (!s.bodyEnded && s.blockedSince === 0 && now - s.lastActive >= core.requestTimeout) {
          const err = new HttpError(408, 'request body timeout');
          s.bodyFailed(err);
          if (s.res.headersSent) this.resetStream(s, CANCEL);
          else this.errorAnswer(s, 408, 'request body timeout');
        }
      }
    }
    if (this.state !== DONE) this.conn.setDeadline(core.sweepInterval);
  }
}

const EMPTY = Buffer.alloc(0);
const EMPTY_NAMES: string[] = [];
const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
const STATUS_STRINGS: string[] = [];
for (let code = 100; code < 600; code++) STATUS_STRINGS[code] = String(code);

function readStreamId(buf: Buffer, p: number): number {
  return buf.readUInt32BE(p) & 0x7fffffff;
}

let dateLine = '';
let dateValue = '';
/** The date field's value for the current second (from the HTTP/1.1 codec's cached line). */
function currentDate(): string {
  const line = currentDateLine();
  if (line !== dateLine) {
    dateLine = line;
    dateValue = line.slice(6, -2);
  }
  return dateValue;
}
