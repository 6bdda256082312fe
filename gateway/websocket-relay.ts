/**
 * WebSockets the gateway proxies, once the upstream answered 101: the client's connection and the
 * upstream's, with a frame scanner on each direction. Frames pass through as they arrive, unchanged (the
 * client's masks stay valid upstream, and any extension the two ends negotiated stays theirs); the scanner
 * reads only frame headers, to enforce the framing rules and the route's message size, and to know the
 * frame boundaries where the gateway may put a close frame of its own (idle and lifetime limits, a reload
 * that drops the route, shutdown). Each side that is told to close gets the close handshake's time to answer
 * (`closeTimeout`), then its connection is cut.
 *
 * Measured against relaying raw bytes (no scanning), reading the headers cost nothing visible in the echo
 * benchmark (see the README), so limits are always enforced.
 */
import { randomBytes } from 'node:crypto';
import type { Conn, EventHandler, EventLoop, LoopTimer } from '../core/index.ts';
import type { HeaderValue, Response } from '../protocols/http1/index.ts';
import {
  CLOSE_GOING_AWAY as GOING_AWAY,
  CLOSE_PROTOCOL_ERROR as PROTOCOL_ERROR,
  CLOSE_TOO_BIG as TOO_BIG,
} from '../protocols/websocket/index.ts';

/** A route's limits (its `websocket` settings), replaced in place by a reload that keeps the route. */
export interface RelayLimits {
  readonly maxMessageSize: number;
  readonly idleTimeout: number;
  readonly maxLifetime: number;
  readonly closeTimeout: number;
}

/** Bad Gateway (1014, IANA's registry of close codes): what a client hears when its upstream broke the rules. */
const BAD_GATEWAY = 1014;

// A direction's states.
const HEADER = 0; // at a frame boundary: the next bytes start a frame header
const PAYLOAD = 1; // inside a frame's payload, `remaining` bytes to go
const FAILED = 2; // the source broke the rules: everything it sends is discarded

/** One direction: frames from `source` to `sink`. */
class Direction {
  readonly source: Conn<Relay>;
  readonly sink: Conn<Relay>;
  /** The source is the client (its frames must be masked, and a close we put toward it is not). */
  readonly fromClient: boolean;
  /** Reserved bits a frame may carry: those of an extension the two ends negotiated (else none). */
  readonly rsv: number;
  state = HEADER;
  remaining = 0;
  /** Payload bytes of the data message in progress. */
  message = 0;
  /** A fragmented message is in progress: continuation frames are due. */
  fragmented = false;
  /** Bytes from the source go to the sink; false once the gateway put its own close toward the sink. */
  forwarding = true;
  /** A close frame of the gateway's, waiting for the next frame boundary to go to the sink. */
  injection: Buffer | null = null;
  /** The sink was sent a close frame (the source's own, or the gateway's). */
  sinkTold = false;
  /** The source started its close frame (its header passed). */
  closeSeen = false;
  /** The source's close frame is through, whole. */
  sourceClosed = false;
  bytes = 0;

  constructor(source: Conn<Relay>, sink: Conn<Relay>, fromClient: boolean, rsv: number) {
    this.source = source;
    this.sink = sink;
    this.fromClient = fromClient;
    this.rsv = rsv;
  }
}

/** A close frame: unmasked toward the client, masked toward the upstream (we are its client). */
function closeFrame(code: number, reason: string, masked: boolean): Buffer {
  const text = Buffer.from(reason);
  const n = 2 + text.length;
  const frame = Buffer.alloc(2 + (masked ? 4 : 0) + n);
  frame[0] = 0x88;
  frame[1] = (masked ? 0x80 : 0) | n;
  let p = 2;
  const payload = Buffer.alloc(n);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  if (masked) {
    const key = randomBytes(4);
    key.copy(frame, 2);
    p = 6;
    for (let i = 0; i < n; i++) payload[i]! ^= key[i & 3]!;
  }
  payload.copy(frame, p);
  return frame;
}

/** An injection that sends nothing: forwarding stops at the next boundary (after the peer's own close). */
const NOTHING = Buffer.alloc(0);

/** Closes the side `to` writes to once it was told to close and `from` (what it sends) saw its answer. */
function settleSide(to: Direction, from: Direction): void {
  if (to.sinkTold && (from.sourceClosed || from.state === FAILED) && !to.sink.closed) to.sink.close();
}

/** What a relay reports when it ends (for the access log). */
export interface RelaySummary {
  readonly route: string;
  readonly target: string;
  readonly durationMs: number;
  readonly bytesFromClient: number;
  readonly bytesFromUpstream: number;
  /** Why the gateway closed it (`idle`, `lifetime`, `too-big`, `protocol`, `route-gone`, `shutdown`), or null. */
  readonly closedBy: string | null;
}

/** Where a relay runs: what a reload checks it against (see {@link WebSocketRelays.reconfigure}). */
export interface RelayPlace {
  readonly route: string;
  readonly target: string;
  /** The upstream the target belongs to. */
  readonly upstreamName: string;
  /** A filter sent the upgrade there (`useUpstream`, a breaker's degraded fallback), not the route. */
  readonly movedByFilter: boolean;
}

/** One proxied WebSocket. */
export class Relay implements RelayPlace {
  readonly route: string;
  readonly target: string;
  readonly upstreamName: string;
  readonly movedByFilter: boolean;
  limits: RelayLimits;
  readonly client: Conn<Relay>;
  readonly upstream: Conn<Relay>;
  /** Frames from the client to the upstream. */
  readonly up: Direction;
  /** Frames from the upstream to the client. */
  readonly down: Direction;
  private readonly relays: WebSocketRelays;
  private readonly startedMs: number;
  private lastActive: number;
  private timer: LoopTimer | null = null;
  private closedBy: string | null = null;
  /** The close timer runs (a close the gateway started, or a client waiting for the upstream's close). */
  private closing = false;
  private open = 2;
  private readonly onEnd: (summary: RelaySummary) => void;

  constructor(
    relays: WebSocketRelays,
    place: RelayPlace,
    limits: RelayLimits,
    client: Conn<Relay>,
    upstream: Conn<Relay>,
    rsv: number,
    onEnd: (summary: RelaySummary) => void,
  ) {
    this.relays = relays;
    this.route = place.route;
    this.target = place.target;
    this.upstreamName = place.upstreamName;
    this.movedByFilter = place.movedByFilter;
    this.limits = limits;
    this.client = client;
    this.upstream = upstream;
    this.up = new Direction(client, upstream, true, rsv);
    this.down = new Direction(upstream, client, false, rsv);
    // A graceful stop waits for these (within its grace) instead of sweeping them as idle: each relay
    // closes itself with a close handshake.
    client.busy = upstream.busy = true;
    this.onEnd = onEnd;
    this.startedMs = this.lastActive = relays.loop.now();
    this.schedule();
  }

  /** Arms the timer for the earlier of the idle and lifetime limits (none when neither is set). */
  schedule(): void {
    if (this.closing) return; // the close timer runs
    this.timer?.cancel();
    this.timer = null;
    const { idleTimeout, maxLifetime } = this.limits;
    let at = 0;
    if (idleTimeout > 0) at = this.lastActive + idleTimeout;
    if (maxLifetime > 0 && (at === 0 || this.startedMs + maxLifetime < at)) at = this.startedMs + maxLifetime;
    if (at === 0) return;
    this.timer = this.relays.loop.after(Math.max(1, at - this.relays.loop.now()), () => this.due());
  }

  private due(): void {
    this.timer = null;
    const now = this.relays.loop.now();
    const { idleTimeout, maxLifetime } = this.limits;
    if (maxLifetime > 0 && now >= this.startedMs + maxLifetime)
      this.goAway('lifetime', 'connection lifetime over');
    else if (idleTimeout > 0 && now >= this.lastActive + idleTimeout) {
      // Bytes still draining to a slow reader are activity, not idleness.
      if (this.client.outboundBuffered > 0 || this.upstream.outboundBuffered > 0) {
        this.lastActive = now;
        this.schedule();
      } else this.goAway('idle', 'idle timeout');
    } else this.schedule();
  }

  /** Moves what arrived from `d.source` on, frame by frame. */
  pump(d: Direction): void {
    const src = d.source;
    if (d.state === FAILED) {
      src.discard();
      return;
    }
    this.lastActive = this.relays.loop.now();
    const buf = src.buffer;
    const end = src.offset + src.inboundBuffered;
    let at = src.offset;
    while (at < end) {
      if (d.state === PAYLOAD) {
        const n = Math.min(d.remaining, end - at);
        at += n;
        d.remaining -= n;
        if (d.remaining === 0) {
          d.state = HEADER;
          if (d.closeSeen) d.sourceClosed = true;
        }
        continue;
      }
      if (d.injection !== null) {
        this.emit(d, at);
        this.inject(d);
      }
      // A frame header: 2 bytes, the extended length, the masking key.
      if (end - at < 2) break;
      const b0 = buf[at]!;
      const b1 = buf[at + 1]!;
      const len7 = b1 & 0x7f;
      const masked = (b1 & 0x80) !== 0;
      const size = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
      if (end - at < size) break;
      let len = len7;
      if (len7 === 126) len = buf.readUInt16BE(at + 2);
      else if (len7 === 127) {
        const high = buf.readUInt32BE(at + 2);
        // Beyond 2^53 no message is meant: the length is broken, or far past any limit.
        len = high > 0x1fffff ? -1 : high * 0x1_0000_0000 + buf.readUInt32BE(at + 6);
      }
      const problem = d.forwarding ? this.check(d, b0, masked, len) : 0;
      if (problem !== 0) {
        this.emit(d, at);
        this.violation(d, problem);
        return;
      }
      at += size;
      if ((b0 & 0x0f) === 0x8) {
        d.closeSeen = true;
        if (len === 0) d.sourceClosed = true;
      }
      if (len > 0) {
        d.remaining = len;
        d.state = PAYLOAD;
      }
    }
    this.emit(d, at);
    if (d.state === HEADER && d.injection !== null) this.inject(d);
    this.settle();
    // Backpressure: a sink that cannot keep up pauses its source until it drains (then `onWritable`).
    const sink = d.sink;
    if (!sink.closed && sink.outboundBuffered > sink.loop.options.highWaterMark && !sink.whenWritable())
      src.pause();
  }

  /** The rule a frame header breaks, as the close code for its sender, or 0. */
  private check(d: Direction, b0: number, masked: boolean, len: number): number {
    if (masked !== d.fromClient || len < 0 || (b0 & 0x70 & ~d.rsv) !== 0) return PROTOCOL_ERROR;
    const opcode = b0 & 0x0f;
    const fin = (b0 & 0x80) !== 0;
    if (opcode >= 0x8) {
      // Control frames: close, ping, pong; never fragmented, 125 bytes at most; a close body has a code.
      if (opcode > 0xa || !fin || len > 125 || (opcode === 0x8 && len === 1)) return PROTOCOL_ERROR;
      return 0;
    }
    if (opcode === 0x0) {
      if (!d.fragmented) return PROTOCOL_ERROR;
      d.message += len;
    } else if (opcode === 0x1 || opcode === 0x2) {
      if (d.fragmented) return PROTOCOL_ERROR;
      d.message = len;
    } else return PROTOCOL_ERROR;
    const max = this.limits.maxMessageSize;
    if (max > 0 && d.message > max) return TOO_BIG;
    d.fragmented = !fin;
    return 0;
  }

  /** Sends (or drops, once not forwarding) the source's scanned bytes up to `at`. */
  private emit(d: Direction, at: number): void {
    const src = d.source;
    const n = at - src.offset;
    if (n <= 0) return;
    d.bytes += n;
    if (d.forwarding && !d.sink.closed) d.sink.write(src.next(n));
    else src.discard(n);
  }

  /** Puts the waiting close frame toward `d.sink` (at a frame boundary); nothing more of the source follows. */
  private inject(d: Direction): void {
    const frame = d.injection!;
    d.injection = null;
    d.forwarding = false;
    d.sinkTold = true;
    if (frame.length > 0 && !d.sink.closed) d.sink.write(frame);
  }

  /** `d.source` broke the rules: it gets `code` and is cut; the other side is told the relay ends. */
  private violation(d: Direction, code: number): void {
    const other = d === this.up ? this.down : this.up;
    this.closedBy ??= code === TOO_BIG ? 'too-big' : 'protocol';
    d.state = FAILED;
    d.source.discard();
    // Toward the offender: the code, at the next boundary of what flows to it.
    this.tell(other, code, code === TOO_BIG ? 'message too big' : 'protocol error');
    // Toward the other side: it did nothing wrong; its peer is gone (a client learns the upstream failed).
    this.tell(
      d,
      d.fromClient ? GOING_AWAY : BAD_GATEWAY,
      d.fromClient ? 'client went away' : 'upstream failed',
    );
    this.armCloseTimer();
    this.settle();
  }

  /** Queues a close frame of the gateway's toward `d.sink`, now if `d` is at a boundary. */
  private tell(d: Direction, code: number, reason: string): void {
    if (d.sinkTold || d.injection !== null) return;
    // The sink has (or is getting) its peer's own close frame: that one stands, sent whole.
    d.injection = d.closeSeen ? NOTHING : closeFrame(code, reason, d.fromClient);
    if (d.state !== PAYLOAD) this.inject(d);
  }

  /**
   * The gateway ends the relay (`why` for the log): both sides get 1001 at their next frame boundary and
   * `closeTimeout` to answer.
   */
  goAway(why: string, reason: string): void {
    if (this.closedBy !== null) return;
    this.closedBy = why;
    this.timer?.cancel();
    this.timer = null;
    this.tell(this.down, GOING_AWAY, reason);
    this.tell(this.up, GOING_AWAY, reason);
    this.armCloseTimer();
    this.settle();
  }

  private armCloseTimer(): void {
    this.closing = true;
    this.timer?.cancel();
    this.timer = this.relays.loop.after(this.limits.closeTimeout, () => {
      this.timer = null;
      this.client.destroy();
      this.upstream.destroy();
    });
  }

  /**
   * In a close the gateway started, closes each side's connection once its part is done: it was sent a
   * close frame, and it answered with its own (or it is the side that broke the rules).
   */
  private settle(): void {
    if (this.closedBy === null) return;
    settleSide(this.down, this.up); // the client
    settleSide(this.up, this.down); // the upstream
  }

  /** The upstream or the client ended its side: the other follows once what was sent to it is out. */
  eof(conn: Conn<Relay>): void {
    if (conn === this.client && this.up.sourceClosed && !this.upstream.closed && !this.client.closed) {
      // The client sent its close and its FIN: it still waits for the upstream's close, which follows
      // (then the upstream closes, and so does this); the close timeout bounds the wait.
      if (!this.closing) this.armCloseTimer();
      return;
    }
    this.follow(conn);
    conn.close();
  }

  /**
   * `conn` ended: the other side's connection closes too, unless the gateway is closing it and it has yet
   * to answer the close frame it was sent (it gets its close timeout for that).
   */
  private follow(conn: Conn<Relay>): void {
    const other = conn === this.client ? this.upstream : this.client;
    if (other.closed) return;
    const toOther = other === this.client ? this.down : this.up;
    if (this.closedBy !== null && toOther.sinkTold) return; // settle() or the close timer ends it
    other.close();
  }

  closed(conn: Conn<Relay>): void {
    this.follow(conn);
    if (--this.open > 0) return;
    this.timer?.cancel();
    this.timer = null;
    this.relays.remove(this);
    this.onEnd({
      route: this.route,
      target: this.target,
      durationMs: this.relays.loop.now() - this.startedMs,
      bytesFromClient: this.up.bytes,
      bytesFromUpstream: this.down.bytes,
      closedBy: this.closedBy,
    });
  }

  /** `conn` drained: the source writing to it may go on. */
  writable(conn: Conn<Relay>): void {
    const source = conn === this.client ? this.upstream : this.client;
    if (!source.closed) {
      source.resume();
      source.wake();
    }
  }
}

/** An accepted upgrade on its way to becoming a relay (see {@link WebSocketRelays.accept}). */
export interface RelayArrival extends RelayPlace {
  /** The limits when the request was routed (the configuration in force now may differ: it wins). */
  readonly limits: RelayLimits;
  /** The two ends negotiated an extension (`Sec-WebSocket-Extensions` in the 101): reserved bits allowed. */
  readonly extensions: boolean;
  /** The upstream's connection, switched to WebSocket (its HTTP codec let go of it). */
  readonly upstream: Conn<unknown>;
  /** Runs once both connections closed. */
  readonly onEnd: (summary: RelaySummary) => void;
}

/**
 * Every proxied WebSocket of one loop: the handlers their connections are handed to, and the set a reload
 * walks to apply new limits or close what lost its route. Loop thread only.
 */
export class WebSocketRelays {
  readonly loop: EventLoop;
  private readonly live = new Set<Relay>();
  /** For the client's connection and the upstream's alike: the relay is the context of both. */
  private readonly handler: EventHandler<Relay>;
  /** Log each relay's end (`http.accessLog`; the dispatcher keeps it current across reloads). */
  accessLog = false;
  /** The upgrade being accepted now (one thread: set around `res.upgrade`, taken by the client's `onOpen`). */
  private arriving: RelayArrival | null = null;
  /** The limits of a route and target under the configuration in force (see {@link reconfigure}). */
  private limitsFor: ((place: RelayPlace) => RelayLimits | null) | null = null;
  /** The loop stops: relays opening now are told 1001 at once. */
  private stopping = false;

  constructor(loop: EventLoop) {
    this.loop = loop;
    this.handler = {
      onOpen: (conn) => {
        if (conn.context instanceof Relay) return; // the upstream's, handed over after the client's
        const a = this.arriving;
        this.arriving = null;
        if (a === null) throw new Error('a WebSocket relay opened with no upgrade accepted');
        const upstream = a.upstream as Conn<Relay>;
        // A reload while the upstream answered the handshake may have changed or dropped the route.
        const limits = this.limitsFor === null ? a.limits : this.limitsFor(a);
        const rsv = a.extensions ? 0x70 : 0;
        const relay = new Relay(this, a, limits ?? a.limits, conn, upstream, rsv, a.onEnd);
        this.live.add(relay);
        conn.context = upstream.context = relay;
        upstream.setHandler(this.handler);
        if (this.stopping) relay.goAway('shutdown', 'server shutting down');
        else if (limits === null) relay.goAway('route-gone', 'route changed');
      },
      onTraffic: (conn) => {
        const relay = conn.context!;
        relay.pump(conn === relay.client ? relay.up : relay.down);
      },
      onWritable: (conn) => conn.context!.writable(conn),
      onEof: (conn) => conn.context!.eof(conn),
      onClose: (conn) => conn.context!.closed(conn),
      onShutdown: () => this.shutdown(),
    };
  }

  /**
   * The loop stops: every WebSocket, and any that opens from now on, is told 1001 and given its close
   * timeout (within the stop's grace: relay connections count as busy).
   */
  shutdown(): void {
    this.stopping = true;
    for (const relay of this.live) relay.goAway('shutdown', 'server shutting down');
  }

  /** How many WebSockets this loop proxies now. */
  get size(): number {
    return this.live.size;
  }

  /**
   * Answers the client's upgrade (101 with `headers`, from the upstream's) and relays between its
   * connection and `arrival.upstream` from then on. Throws what `res.upgrade` throws (a field it refuses);
   * nothing is relayed then.
   */
  accept(res: Response, headers: Readonly<Record<string, HeaderValue>>, arrival: RelayArrival): void {
    this.arriving = arrival;
    try {
      res.upgrade(this.handler as EventHandler, headers);
    } finally {
      this.arriving = null;
    }
  }

  /** @internal */
  remove(relay: Relay): void {
    this.live.delete(relay);
  }

  /**
   * A configuration came into force (at start, and after each reload): `limitsFor(place)` gives a relay's
   * limits, or null when its route (or the route's target) is gone or no longer proxies WebSockets; those
   * are told 1001.
   */
  reconfigure(limitsFor: (place: RelayPlace) => RelayLimits | null): void {
    this.limitsFor = limitsFor;
    for (const relay of this.live) {
      const limits = limitsFor(relay);
      if (limits === null) relay.goAway('route-gone', 'route changed');
      else {
        relay.limits = limits;
        relay.schedule();
      }
    }
  }
}
