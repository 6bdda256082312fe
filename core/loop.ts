import { existsSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { type Address, formatAddress, parseAddress } from './address.ts';
import { Arena } from './arena.ts';
import { CLOSED, CLOSING, CONNECTING, Conn, OPEN } from './conn.ts';
import { type ConnCloseMessage, type ConnOpenMessage, engineChannels } from './diagnostics.ts';
import { NetloomError, netloomError } from './errors.ts';
import { type HandleWriter, threadHandleWriter, writeError } from './handle-write.ts';
import { Action, type EventHandler, type HandlerExport } from './handler.ts';
import { RingLogger } from './log/logger.ts';
import { type Logger, stderrLogger } from './logger.ts';
import { MemoryPipe } from './memory-pipe.ts';
import { createMetricsMemory } from './metrics/memory.ts';
import { MetricsWriter } from './metrics/writer.ts';
import {
  adoptHandle,
  type ClientHandle,
  type IoPath,
  ioPath,
  socketOfHandle,
  takeAccepts,
  tlsReadInto,
} from './node-internals.ts';
import type { ResolvedOptions } from './options.ts';
import { ACCEPTED, CLOSED as CLOSED_COUNT, DIALED, OPEN as OPEN_COUNT, REJECTED, StatsRow } from './stats.ts';
import { TimerWheel } from './timer-wheel.ts';
import { TlsAcceptor } from './tls/acceptor.ts';
import { CertificateStore } from './tls/certificates.ts';
import { dialTlsOptions } from './tls/dial.ts';
import type { CertificateSource, DialTlsOptions, ResolvedTls } from './tls/options.ts';
import { createTicketKeys } from './tls/ticket-keys.ts';

const kConn = Symbol('netloom.conn');
type ConnSocket = net.Socket & { [kConn]: Conn };

/** During a graceful stop, idle connections are looked for this often; one quiet period makes them idle. */
const SHUTDOWN_SWEEP_MS = 100;
/** How often a loop publishes its byte counters to shared memory. */
const STATS_PUBLISH_MS = 20;
/** Size of the loop's shared read buffer: libuv reads at most this much per call. */
const READ_BUFFER_SIZE = 64 * 1024;

// Shared listeners: `this` is the socket, so no closure is created per connection.
function onSocketRead(this: ConnSocket, n: number, buf: Buffer): boolean {
  const conn = this[kConn];
  conn.loop.onData(conn, buf, n);
  return true; // reading is paused through the socket (Conn.updateReading), not by this answer
}
function onSocketData(this: ConnSocket, chunk: Buffer): void {
  const conn = this[kConn];
  conn.loop.onData(conn, chunk, chunk.length);
}
function onSocketEnd(this: ConnSocket): void {
  const conn = this[kConn];
  conn.loop.onEnd(conn);
}
function onSocketError(this: ConnSocket, err: Error): void {
  // The socket is dead now; its 'close' follows only after a tick, which a handler looping on microtasks
  // (write, await drain) would never let run: the connection must say it is closed at once.
  this[kConn].destroy(err);
}
function onSocketClose(this: ConnSocket): void {
  const conn = this[kConn];
  conn.loop.onClosed(conn);
}
function onSocketConnect(this: ConnSocket): void {
  const conn = this[kConn];
  conn.loop.onConnected(conn);
}

/** A cancellable loop timer from {@link EventLoop.after} or {@link EventLoop.every}. */
export interface LoopTimer {
  /** Stops the timer; safe to call more than once. */
  cancel(): void;
}

/** Options of {@link EventLoop.dial}. */
export interface DialOptions<Ctx = unknown> {
  /** Milliseconds to wait for the connection before failing with `ERR_NETLOOM_DIAL_TIMEOUT` (default: the engine's `dialTimeout`). */
  timeout?: number;
  /** TCP_NODELAY on the new connection (default: the engine's `noDelay`). */
  noDelay?: boolean;
  /** Initial `context` of the new connection. */
  context?: Ctx;
  /**
   * Dial over TLS: the certificate is verified (chain and name) unless `rejectUnauthorized: false`;
   * `handler.onOpen` runs once the handshake is done, and a failed verification closes the connection with
   * `ERR_NETLOOM_DIAL` (the OpenSSL reason in its message and `cause`).
   */
  tls?: DialTlsOptions;
}

/** @internal What the engine hands a loop. */
export interface LoopInit {
  index: number;
  loops: number;
  options: ResolvedOptions;
  statsBuffer: SharedArrayBuffer;
  /** The engine's name, shared by its loops. */
  engineId?: string;
  requestShutdown: () => void;
  /** How this loop moves bytes (the engine's verified path; default: this thread's). */
  io?: IoPath;
  log?: Logger;
  /** The session-ticket keys every loop shares (see tls/ticket-keys.ts), when the listener has TLS. */
  tlsKeys?: SharedArrayBuffer;
  /** The engine's metrics memory (a row per loop); a loop of its own when absent. */
  metricsBuffer?: SharedArrayBuffer;
}

/**
 * One event loop: a listener, the connections it accepted or dialed, their timers and its buffer arena.
 * Everything here runs on the loop's own thread; a loop object never crosses threads, so none of its
 * methods may be called from another thread.
 */
export class EventLoop {
  /** This loop's index, 0 to `loops - 1`. */
  readonly index: number;
  /** How many loops the engine runs. */
  readonly loops: number;
  /**
   * A name unique to the engine, the same on each of its loops (a restarted loop included): what a feature
   * spanning the loops names its `BroadcastChannel` after (WebSocket pub/sub does).
   */
  readonly engineId: string;
  /** The engine's options, defaults applied. */
  readonly options: ResolvedOptions;
  /** `options.data`, as cloned into this loop's thread. */
  readonly data: unknown;
  /** This loop's logger. */
  log: Logger;
  /** The address this loop listens on, with its real port, once listening. */
  address = '';
  /** The TCP port this loop listens on (0 for Unix sockets or before listening). */
  port = 0;
  /** True once a graceful stop has begun. */
  shuttingDown = false;

  /** How this loop reads and writes (see node-internals.ts). */
  readonly io: IoPath;
  /** @internal The direct handle writer, or null when writes go through the socket. */
  readonly writer: HandleWriter | null;
  /** @internal */ readonly arena: Arena;
  /** @internal */ readonly stats: StatsRow;
  /**
   * This loop's metrics: make series once (`loop.metrics.series(family, labels)`), update them on the hot
   * path with no allocation; `engine.metrics()` sums every loop's. Loop thread only.
   */
  readonly metrics: MetricsWriter;
  /** @internal A coarse clock (ms), refreshed on timer ticks, accepts and deferred turns, not on every read. */
  clock = Date.now();

  private handler: EventHandler = {};
  private server: net.Server | null = null;
  private unixPath: string | null = null;
  private readonly conns = new Set<Conn>();
  /** Accepted connections open now (what `maxConnections` bounds; dialed ones do not count). */
  private accepted = 0;
  /** @internal Every socket of this loop reads into this one buffer (Node's `onread`); see `Conn.receive`. */
  readonly readBuffer: Buffer;
  private readonly onread: net.OnReadOpts;
  private readonly wheel: TimerWheel<Conn>;
  private readonly dirty: Conn[] = [];
  /** Empty lists connections borrow while bytes wait to be written (see `Conn.segments`). */
  private readonly lists: unknown[][] = [];
  private readonly wakes: Conn[] = [];
  /** Connections whose inbound slab emptied outside a turn (returned in the check phase). */
  private readonly settles: Conn[] = [];
  private depth = 0;
  private immediate: NodeJS.Immediate | null = null;
  /** Inside the check-phase flush: callbacks run there are flushed by it, not by another immediate. */
  private flushing = false;
  private readonly runImmediateBound = () => this.runImmediate();
  private nextId = 1;
  private tickTimer: NodeJS.Timeout | null = null;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly requestShutdown: () => void;
  private stopping: Promise<void> | null = null;
  private stopped: (() => void) | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private forceTimer: NodeJS.Timeout | null = null;
  private readonly publishTimer: NodeJS.Timeout;
  private readonly tlsKeys: SharedArrayBuffer | null;
  /** The TLS handshakes of the listener, when it has TLS. */
  private tls: TlsAcceptor | null = null;
  /** Acceptors replaced by `updateTls` whose handshakes still run (they count, and stop closes them). */
  private retired: TlsAcceptor[] = [];
  private ownKeys: SharedArrayBuffer | null = null;

  /** @internal Loops are made by the engine. */
  constructor(init: LoopInit) {
    this.index = init.index;
    this.loops = init.loops;
    this.engineId = init.engineId ?? `netloom-${process.pid}-loop-${init.index}`;
    this.options = init.options;
    this.data = init.options.data;
    this.log =
      init.log ??
      (init.options.logRing !== null
        ? new RingLogger(init.options.logRing, init.index, true)
        : stderrLogger(init.index));
    this.requestShutdown = init.requestShutdown;
    this.tlsKeys = init.tlsKeys ?? null;
    this.io = init.io ?? ioPath();
    this.writer = this.io.write === 'handle' ? threadHandleWriter() : null;
    this.arena = new Arena(64, init.options.poisonViews);
    // Taken from the arena so `arena.owns` reports views of it as engine memory that writes must copy.
    this.readBuffer = this.arena.permanent(READ_BUFFER_SIZE);
    this.onread = {
      buffer: this.readBuffer,
      callback: onSocketRead as (n: number, buf: Uint8Array) => boolean,
    };
    this.stats = new StatsRow(init.statsBuffer, init.index);
    this.metrics =
      init.metricsBuffer === undefined
        ? new MetricsWriter(createMetricsMemory({ rows: 1, series: 256, cells: 4096 }), 0)
        : new MetricsWriter(init.metricsBuffer, init.index);
    this.publishTimer = setInterval(() => {
      this.stats.publish();
      this.metrics.publish();
    }, STATS_PUBLISH_MS);
    this.publishTimer.unref();
    this.wheel = new TimerWheel<Conn>(
      init.options.timerResolution,
      (conn, now) => conn.expire(now),
      (now) => {
        this.clock = now;
      },
    );
  }

  /**
   * Milliseconds since the epoch, at the loop's timer resolution: while timers are armed the loop refreshes
   * its clock on every tick instead of asking the system on every call. For timestamps on hot paths.
   */
  now(): number {
    if (!this.wheel.running) this.clock = Date.now();
    return this.clock;
  }

  /** Connections open on this loop now (accepted and dialed). */
  get connections(): number {
    return this.conns.size;
  }

  /** @internal Resolves the handler export and runs `onBoot`. */
  async boot(exported: HandlerExport): Promise<void> {
    this.handler = typeof exported === 'function' ? await exported(this) : exported;
    if (this.handler === null || typeof this.handler !== 'object') {
      throw netloomError('ERR_NETLOOM_HANDLER', 'the handler factory did not return a handler object');
    }
    const action = await this.handler.onBoot?.(this);
    if (action === Action.Shutdown) this.shutdown();
    if (this.handler.onTick !== undefined) {
      this.tickTimer = setInterval(() => this.tick(), this.options.tickInterval);
      this.tickTimer.unref();
    }
  }

  /** @internal Starts listening; `port` overrides the address's port (loops after the first share it). */
  async listen(address: Address, port?: number): Promise<number> {
    const opts = this.options;
    if (opts.tls !== null) await this.startTls();
    const server = net.createServer({
      allowHalfOpen: true,
      noDelay: opts.noDelay,
      keepAlive: opts.keepAlive !== false,
      keepAliveInitialDelay: opts.keepAlive === false ? 0 : opts.keepAlive,
      // Paused so `adopt` can move the handle before the first read.
      pauseOnConnect: true,
    });
    server.on('connection', (socket: net.Socket) => this.accept(socket));
    const bind = () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const done = () => {
          server.off('error', reject);
          resolve();
        };
        if (address.kind === 'unix') server.listen({ path: address.path, backlog: opts.backlog }, done);
        else
          server.listen(
            {
              host: address.host,
              port: port ?? address.port,
              backlog: opts.backlog,
              reusePort: this.loops > 1,
              ipv6Only: address.family === 6,
            },
            done,
          );
      });
    try {
      await bind();
    } catch (err) {
      if (address.kind !== 'unix' || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      // A socket file left by a process that died: remove it if nobody answers on it, then bind again.
      if (await unixPathAnswers(address.path)) throw err;
      unlinkSync(address.path);
      await bind();
    }
    server.on('error', (err) => this.log.error('listener error', { error: err }));
    // Accept straight from the listening handle where Node allows it (internal 5): one socket per accept.
    if (this.io.read === 'onread') {
      takeAccepts(
        server,
        (handle) => this.acceptHandle(handle),
        (errno) => this.log.error('accept failed', { error: writeError(errno) }),
      );
    }
    this.server = server;
    const bound = server.address();
    if (address.kind === 'unix') {
      this.unixPath = address.path;
      this.address = formatAddress(address);
    } else if (bound !== null && typeof bound === 'object') {
      this.port = bound.port;
      this.address = formatAddress({ ...address, port: bound.port });
    }
    return this.port;
  }

  private register(conn: Conn, socket: net.Socket, streamed: boolean): void {
    (socket as ConnSocket)[kConn] = conn;
    if (streamed) socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    this.conns.add(conn);
    this.stats.add(OPEN_COUNT, 1);
  }

  /** Loads the listener's certificates (a bad one fails the start) and makes its handshake acceptor. */
  private async startTls(): Promise<void> {
    this.tls = await this.makeAcceptor(this.options.tls!);
  }

  /**
   * @internal New TLS settings (see `Engine.updateTls`): a new acceptor takes the next handshakes; those in
   * progress finish on the old one. Resolves with the problems (the old settings stay when there are any).
   */
  async updateTls(options: ResolvedTls): Promise<string[]> {
    if (this.tls === null) return ['this loop has no TLS listener'];
    let next: TlsAcceptor;
    try {
      next = await this.makeAcceptor(options);
    } catch (err) {
      return [(err as Error).message];
    }
    const old = this.tls;
    this.tls = next;
    old.retire();
    this.retired = this.retired.filter((a) => a.handshaking > 0);
    if (old.handshaking > 0) this.retired.push(old);
    return [];
  }

  private async makeAcceptor(options: ResolvedTls): Promise<TlsAcceptor> {
    let source: CertificateSource | null = null;
    if (options.certificateSource !== undefined) {
      const mod = (await import(options.certificateSource)) as {
        default?: CertificateSource;
        certificateSource?: CertificateSource;
      };
      source = mod.default ?? mod.certificateSource ?? null;
      if (source === null || typeof source.load !== 'function') {
        throw netloomError(
          'ERR_NETLOOM_OPTION',
          `tls.certificateSource ${options.certificateSource} exports no CertificateSource (default or certificateSource)`,
        );
      }
    }
    const store = new CertificateStore(options, this.log, source);
    await store.init();
    // Inline engines share theirs too (one loop, but updateTls must keep the keys).
    this.ownKeys ??= this.tlsKeys ?? createTicketKeys();
    return new TlsAcceptor(this, options, store, this.ownKeys);
  }

  /** @internal A TLS connection finished its handshake: it is served like any accepted connection. */
  admitSecure(socket: tls.TLSSocket): void {
    if (this.shuttingDown) {
      socket.destroy(); // a handshake that finished after stop began: nothing serves it any more
      return;
    }
    // Decrypted bytes into the shared buffer, like TCP reads (internal 7), else `data` events. Bytes the
    // socket decrypted before this point (sent with the client's Finished) are handed over first.
    const shared = this.io.read === 'onread' && tlsReadInto(socket, this.onread);
    const early: Buffer[] = [];
    if (shared) {
      let chunk: Buffer | null = socket.read() as Buffer | null;
      while (chunk !== null) {
        early.push(chunk);
        chunk = socket.read() as Buffer | null;
      }
    }
    const conn = this.admit(socket, !shared);
    for (const chunk of early) if (!conn.closed) this.onData(conn, chunk, chunk.length);
  }

  /** Handshakes in progress on this loop (they count toward `maxConnections`). */
  private handshaking(): number {
    let n = this.tls?.handshaking ?? 0;
    for (const a of this.retired) n += a.handshaking;
    return n;
  }

  /**
   * Re-reads every certificate of the listener now (files, the directory's cached pairs); resolves with the
   * problems found, in words (empty when all loaded). A certificate that does not load keeps the previous one.
   */
  reloadCertificates(): Promise<string[]> {
    return this.tls === null ? Promise.resolve([]) : this.tls.reload();
  }

  /** A connection from the `connection` event (the path without internal 5). */
  private accept(raw: net.Socket): void {
    if (this.full()) {
      raw.destroy();
      return;
    }
    if (this.tls !== null) {
      this.tls.accept(raw);
      return;
    }
    const socket = this.adopt(raw);
    this.admit(socket, socket === raw);
  }

  /** An accepted handle, taken from the listening handle (internal 5). */
  private acceptHandle(handle: ClientHandle): void {
    if (this.full()) {
      handle.close();
      return;
    }
    const opts = this.options;
    if (opts.noDelay) handle.setNoDelay?.(true);
    if (this.tls !== null) {
      // TLS reads through OpenSSL, not into the shared buffer: a plain socket that the handshake wraps.
      const raw = new net.Socket({
        handle,
        allowHalfOpen: true,
        readable: true,
        writable: true,
      } as unknown as net.SocketConstructorOpts);
      if (opts.keepAlive !== false) raw.setKeepAlive(true, opts.keepAlive);
      this.tls.accept(raw);
      return;
    }
    const socket = socketOfHandle(handle, this.onread);
    if (opts.keepAlive !== false) socket.setKeepAlive(true, opts.keepAlive);
    this.admit(socket, false);
  }

  /** At `maxConnections`: the new connection is refused (and counted). */
  private full(): boolean {
    const max = this.options.maxConnections;
    if (max > 0 && this.accepted + this.handshaking() >= max) {
      this.stats.add(REJECTED, 1);
      return true;
    }
    return false;
  }

  /** Serves an accepted socket; `streamed`: it reads through `data` events (paused until now). */
  private admit(socket: net.Socket, streamed: boolean): Conn {
    this.clock = Date.now();
    const conn = new Conn(this.nextId++, this, socket, this.handler, false);
    conn.fromListener = true;
    this.register(conn, socket, streamed);
    // Before onOpen, so a pause() there holds.
    if (streamed) socket.resume();
    this.accepted++;
    this.stats.add(ACCEPTED, 1);
    if (this.options.idleTimeout > 0) this.rearm(conn);
    announceOpen(conn);
    this.dispatchOpen(conn);
    return conn;
  }

  /**
   * Moves an accepted socket's handle into a socket made with `onread`, so reads land in the loop's shared
   * buffer (internal 1 in node-internals.ts). On the `stream` path, or without a handle, the socket is used as
   * it is and reads arrive as `data` events.
   */
  private adopt(raw: net.Socket): net.Socket {
    if (this.io.read !== 'onread') return raw;
    return adoptHandle(raw, this.onread) ?? raw;
  }

  /**
   * Dials `address` (`tcp://host:port`, `unix:///path`, or `host:port`) and returns the new connection at
   * once; `handler.onOpen` runs when it connects and `handler.onClose` runs if it fails (the error's code is
   * `ERR_NETLOOM_DIAL` or `ERR_NETLOOM_DIAL_TIMEOUT`). Writes made before it connects are sent on connect.
   * The connection belongs to this loop like an accepted one. Loop thread only.
   */
  dial<Ctx = unknown>(
    address: string,
    handler: EventHandler<Ctx>,
    options: DialOptions<Ctx> = {},
  ): Conn<Ctx> {
    const addr = parseAddress(address);
    const timeout = options.timeout ?? this.options.dialTimeout;
    if (!Number.isInteger(timeout) || timeout < 1) {
      throw netloomError(
        'ERR_NETLOOM_OPTION',
        `dial option timeout must be an integer >= 1, got ${String(timeout)}`,
      );
    }
    const secure = options.tls !== undefined;
    const socket = secure
      ? tls.connect(dialTlsOptions(addr, options.tls!, options.noDelay ?? this.options.noDelay))
      : addr.kind === 'unix'
        ? net.connect({ path: addr.path, allowHalfOpen: true, onread: this.onread })
        : net.connect({
            host: addr.host,
            port: addr.port,
            family: addr.family === 0 ? undefined : addr.family,
            allowHalfOpen: true,
            noDelay: options.noDelay ?? this.options.noDelay,
            keepAlive: this.options.keepAlive !== false,
            onread: this.onread,
          });
    this.clock = Date.now();
    const conn = new Conn<Ctx>(this.nextId++, this, socket, handler, true);
    conn.context = options.context;
    this.register(conn as Conn, socket, secure);
    socket.once(secure ? 'secureConnect' : 'connect', onSocketConnect);
    this.stats.add(DIALED, 1);
    conn.expireAt = this.clock + timeout;
    this.rearm(conn as Conn);
    return conn;
  }

  /**
   * An in-memory connection served by `handler` (its `onOpen` runs now): a test drives it with
   * `pipe.read(bytes)` and reads what the handler wrote with `pipe.take()`. See {@link MemoryPipe}.
   */
  pipe<Ctx = unknown>(handler: EventHandler<Ctx>): MemoryPipe<Ctx> {
    const socket = MemoryPipe.transport();
    this.clock = Date.now();
    const conn = new Conn<Ctx>(this.nextId++, this, socket, handler, false);
    this.register(conn as Conn, socket, false);
    const pipe = new MemoryPipe<Ctx>(this, conn, socket);
    if (this.options.idleTimeout > 0) this.rearm(conn as Conn);
    announceOpen(conn as Conn);
    this.dispatchOpen(conn as Conn);
    return pipe;
  }

  /** @internal */
  onConnected(conn: Conn): void {
    if (conn.state !== CONNECTING) return;
    this.clock = Date.now();
    conn.state = OPEN;
    conn.opened = true;
    conn.expireAt = 0;
    conn.lastActive = this.clock;
    this.wheel.cancel(conn);
    this.rearm(conn);
    announceOpen(conn);
    this.dispatchOpen(conn);
  }

  // ---- dispatch ------------------------------------------------------------------------------------

  /** @internal Runs `onOpen` of the connection's handler (accept, connect, or a handler change). */
  dispatchOpen(conn: Conn): void {
    const h = conn.handler;
    if (h.onOpen === undefined) return;
    let action: Action | void = Action.None;
    this.depth++;
    try {
      action = h.onOpen(conn);
    } catch (err) {
      this.handlerFailed(conn, 'onOpen', err);
    }
    this.endTurn();
    if (action) this.apply(conn, action);
  }

  /** @internal */
  onData(conn: Conn, buf: Buffer, n: number): void {
    if (conn.state !== OPEN) return; // closing: read and discard until the peer's FIN
    if (conn.receive(buf, n)) {
      if (conn.reading) this.traffic(conn);
      else conn.holdWhilePaused();
    }
    // libuv reads up to 32 buffers per readiness before the check-phase flush: hand a connection's writes to
    // the socket now once they pass the high-water mark, so backpressure stops reading after this read.
    if (conn.dirty && conn.outboundBuffered > this.options.highWaterMark) conn.flush();
    // The next read overwrites the shared buffer anyway; poisoning it now makes a kept view fail at once.
    if (this.options.poisonViews && buf === this.readBuffer) buf.fill(0xde, 0, n);
  }

  private traffic(conn: Conn): void {
    const h = conn.handler;
    if (h.onTraffic === undefined) {
      conn.settleInbound();
      return;
    }
    let action: Action | void = Action.None;
    this.depth++;
    conn.beginTraffic();
    try {
      action = h.onTraffic(conn);
    } catch (err) {
      this.handlerFailed(conn, 'onTraffic', err);
    }
    if (conn.state !== CLOSED) conn.settleInbound();
    this.endTurn();
    if (action) this.apply(conn, action);
  }

  /** @internal */
  onEnd(conn: Conn): void {
    if (conn.state === CLOSING) {
      // The peer is done sending. With our last bytes still on their way, the socket closes by itself once
      // they and our FIN are out (linger bounds the wait); destroying now would cut them off.
      if (conn.outboundBuffered === 0) conn.destroy();
      return;
    }
    if (conn.state !== OPEN) return;
    // A TLS read can carry the peer's end behind records held while paused: they go first (at resume).
    if (conn.holding) {
      conn.deferEof();
      return;
    }
    const h = conn.handler;
    if (h.onEof === undefined) {
      conn.close();
      return;
    }
    let action: Action | void = Action.None;
    this.depth++;
    try {
      action = h.onEof(conn);
    } catch (err) {
      this.handlerFailed(conn, 'onEof', err);
    }
    this.endTurn();
    if (action) this.apply(conn, action);
  }

  /** @internal */
  dispatchWritable(conn: Conn): void {
    const h = conn.handler;
    if (h.onWritable === undefined || conn.state !== OPEN) return;
    let action: Action | void = Action.None;
    this.depth++;
    try {
      action = h.onWritable(conn);
    } catch (err) {
      this.handlerFailed(conn, 'onWritable', err);
    }
    this.endTurn();
    if (action) this.apply(conn, action);
  }

  /** @internal */
  dispatchDeadline(conn: Conn): void {
    const h = conn.handler;
    if (h.onDeadline === undefined) {
      conn.destroy(netloomError('ERR_NETLOOM_DEADLINE', `deadline passed on connection ${conn.id}`));
      return;
    }
    let action: Action | void = Action.None;
    this.depth++;
    try {
      action = h.onDeadline(conn);
    } catch (err) {
      this.handlerFailed(conn, 'onDeadline', err);
    }
    this.endTurn();
    if (action) this.apply(conn, action);
  }

  /** @internal */
  onClosed(conn: Conn): void {
    this.wheel.cancel(conn);
    conn.release();
    this.conns.delete(conn);
    if (conn.fromListener) this.accepted--;
    this.stats.add(OPEN_COUNT, -1);
    this.stats.add(CLOSED_COUNT, 1);
    let err = conn.closeError;
    if (!conn.opened && !(err instanceof NetloomError)) {
      err = netloomError('ERR_NETLOOM_DIAL', `dial failed: ${err?.message ?? 'connection closed'}`, err);
    }
    // A dial that never connected was never announced open: it does not close either.
    if (conn.opened && engineChannels.connClose.hasSubscribers)
      engineChannels.connClose.publish({ conn, error: err } satisfies ConnCloseMessage);
    const h = conn.handler;
    if (h.onClose !== undefined) {
      let action: Action | void = Action.None;
      this.depth++;
      try {
        action = h.onClose(conn, err);
      } catch (e) {
        this.log.error('onClose threw', { conn: conn.id, error: e });
      }
      this.endTurn();
      if (action === Action.Shutdown) this.shutdown();
    }
    if (this.stopped !== null && this.conns.size === 0) this.finishStop();
  }

  private apply(conn: Conn, action: Action): void {
    if (action === Action.Close) conn.close();
    else if (action === Action.Shutdown) this.shutdown();
  }

  private handlerFailed(conn: Conn, where: string, err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const wrapped = netloomError('ERR_NETLOOM_HANDLER', `${where} threw: ${message}`, err);
    this.log.error(wrapped.message, { conn: conn.id, error: err });
    conn.destroy(wrapped);
  }

  /**
   * A callback returned. Staged writes are not flushed here but once per I/O phase (in the check phase of the
   * same loop iteration): every connection that became ready in this poll gets served first, then each
   * connection's bytes leave in one write. That batches pipelined requests and, for a proxy, keeps an
   * upstream on the same core from being woken (and preempting us) once per request.
   */
  private endTurn(): void {
    if (--this.depth === 0 && this.dirty.length !== 0 && this.immediate === null && !this.flushing) {
      this.immediate = setImmediate(this.runImmediateBound);
    }
  }

  /** @internal An empty list for a connection's pending write (given back empty with `returnList`). */
  borrowList(): unknown[] {
    return this.lists.pop() ?? [];
  }

  /** @internal */
  returnList(list: unknown[]): void {
    // Kept with their capacity (truncating would shrink the backing store); a bounded number of them.
    if (this.lists.length < 1024) this.lists.push(list);
  }

  /** @internal A connection has staged bytes: flush them at the end of this turn. */
  markDirty(conn: Conn): void {
    conn.dirty = true;
    this.dirty.push(conn);
    if (this.depth === 0 && this.immediate === null && !this.flushing)
      this.immediate = setImmediate(this.runImmediateBound);
  }

  /** @internal */
  scheduleWake(conn: Conn): void {
    this.wakes.push(conn);
    if (this.immediate === null) this.immediate = setImmediate(this.runImmediateBound);
  }

  /** @internal A connection's inbound slab emptied outside a traffic turn: give it back after this callback. */
  scheduleSettle(conn: Conn): void {
    this.settles.push(conn);
    if (this.immediate === null) this.immediate = setImmediate(this.runImmediateBound);
  }

  private flushDirty(): void {
    // pop, not `length = 0`: truncating shrinks the backing store and the next push reallocates it.
    const list = this.dirty;
    let conn = list.pop();
    while (conn !== undefined) {
      conn.flush();
      conn = list.pop();
    }
  }

  private runImmediate(): void {
    this.immediate = null;
    this.clock = Date.now();
    this.flushing = true;
    if (this.wakes.length !== 0) {
      const wakes = this.wakes.splice(0);
      for (const conn of wakes) {
        conn.woken = false;
        if (conn.state !== OPEN) continue;
        if (!conn.eofDeferred || conn.inboundBuffered > 0) this.traffic(conn);
        if (conn.state === OPEN && conn.takeDeferredEof()) this.onEnd(conn);
      }
    }
    if (this.dirty.length !== 0) this.flushDirty();
    this.flushing = false;
    const settles = this.settles;
    for (let conn = settles.pop(); conn !== undefined; conn = settles.pop()) conn.settleEmptied();
  }

  // ---- timers --------------------------------------------------------------------------------------

  /** @internal Re-arms a connection's wheel entry after its due time moved earlier or was cleared. */
  rearm(conn: Conn): void {
    const at = conn.nextDue();
    if (at === 0) this.wheel.cancel(conn);
    else if (conn.wheelSlot === -1 || at < conn.wheelAt) this.wheel.schedule(conn, at);
  }

  /** Runs `fn` once after `ms` milliseconds on this loop. An exception in `fn` is logged, not fatal. */
  after(ms: number, fn: () => void): LoopTimer {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.runTimer(fn);
    }, ms);
    this.timers.add(timer);
    return {
      cancel: () => {
        clearTimeout(timer);
        this.timers.delete(timer);
      },
    };
  }

  /** Runs `fn` every `ms` milliseconds on this loop until cancelled or the loop stops. */
  every(ms: number, fn: () => void): LoopTimer {
    const timer = setInterval(() => this.runTimer(fn), ms);
    this.timers.add(timer);
    return {
      cancel: () => {
        clearInterval(timer);
        this.timers.delete(timer);
      },
    };
  }

  private runTimer(fn: () => void): void {
    this.clock = Date.now();
    this.depth++;
    try {
      fn();
    } catch (err) {
      this.log.error('loop timer threw', { error: err });
    }
    this.endTurn();
  }

  private tick(): void {
    const h = this.handler;
    if (h.onTick === undefined) return;
    let action: Action | void = Action.None;
    this.depth++;
    try {
      action = h.onTick(this);
    } catch (err) {
      this.log.error('onTick threw', { error: err });
    }
    this.endTurn();
    if (action === Action.Shutdown) this.shutdown();
  }

  // ---- shutdown ------------------------------------------------------------------------------------

  /** Asks the engine to stop gracefully (every loop, not just this one). */
  shutdown(): void {
    this.requestShutdown();
  }

  /**
   * @internal Graceful stop: stop accepting, tell the handler, close connections as they go idle, destroy
   * what is left at the deadline, and resolve when no connection remains.
   */
  stop(deadline: number): Promise<void> {
    if (this.stopping !== null) return this.stopping;
    this.shuttingDown = true;
    this.stopping = new Promise<void>((resolve) => {
      this.stopped = resolve;
    });
    if (this.tickTimer !== null) clearInterval(this.tickTimer);
    this.tickTimer = null;
    this.server?.close();
    this.tls?.close();
    for (const a of this.retired) a.close();
    this.retired = [];
    if (this.unixPath !== null && existsSync(this.unixPath)) {
      try {
        unlinkSync(this.unixPath);
      } catch {
        // Someone else removed or replaced it; nothing of ours to clean.
      }
    }
    // The listener's handler hears the shutdown, and so does each other handler a connection was handed
    // to (an upgrade: a WebSocket says Going Away before the sweep closes it).
    const handlers = new Set<EventHandler>([this.handler]);
    for (const conn of this.conns) handlers.add(conn.handler as EventHandler);
    for (const h of handlers) {
      if (h.onShutdown === undefined) continue;
      this.depth++;
      try {
        h.onShutdown(this);
      } catch (err) {
        this.log.error('onShutdown threw', { error: err });
      }
      this.endTurn();
    }
    this.sweepIdle();
    if (this.conns.size === 0) {
      this.finishStop();
    } else {
      this.sweepTimer = setInterval(() => this.sweepIdle(), SHUTDOWN_SWEEP_MS);
      this.forceTimer = setTimeout(() => {
        const err = netloomError('ERR_NETLOOM_SHUTDOWN', `shutdown deadline of ${deadline} ms passed`);
        for (const conn of [...this.conns]) conn.destroy(err);
      }, deadline);
    }
    return this.stopping;
  }

  /** Closes connections that are idle: nothing buffered, not busy, and no traffic since the last sweep. */
  private sweepIdle(): void {
    this.clock = Date.now();
    for (const conn of [...this.conns]) {
      const quiet = conn.activity === conn.sweepMark;
      conn.sweepMark = conn.activity;
      if (
        quiet &&
        conn.state === OPEN &&
        !conn.busy &&
        conn.inboundBuffered === 0 &&
        conn.outboundBuffered === 0
      ) {
        conn.close();
      }
    }
  }

  private finishStop(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    if (this.forceTimer !== null) clearTimeout(this.forceTimer);
    this.sweepTimer = this.forceTimer = null;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.wheel.dispose();
    clearInterval(this.publishTimer);
    this.stats.publish();
    this.metrics.publish();
    const done = this.stopped;
    this.stopped = null;
    done?.();
  }
}

/** Whether something accepts connections on a Unix socket path. */
function unixPathAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** Publishes `netloom:conn:open` (once a connection, before its first handler's `onOpen`). */
function announceOpen(conn: Conn): void {
  if (engineChannels.connOpen.hasSubscribers)
    engineChannels.connOpen.publish({ conn } satisfies ConnOpenMessage);
}
