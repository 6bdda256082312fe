import { availableParallelism } from 'node:os';
import { netloomError } from './errors.ts';
import { type ResolvedTls, resolveTls, type TlsOptions } from './tls/options.ts';

/**
 * Options of {@link serve}. Every option is documented here, where it is declared; defaults are in
 * {@link DEFAULT_OPTIONS}. Options are structured-cloned into each loop's worker, so they hold data only.
 */
export interface EngineOptions {
  /**
   * Where to listen: `tcp://host:port`, `tcp4://…`, `tcp6://[::]:port`, `unix:///path` or `host:port`.
   * Port 0 picks a free port; every loop then shares the port the first loop got.
   */
  address?: string;

  /**
   * Number of event loops. Each loop beyond one runs on its own worker thread with its own listener on the
   * same address (SO_REUSEPORT), and the kernel spreads connections. `1` runs the loop on the calling thread
   * with no worker. `'auto'` means the CPU count.
   */
  loops?: number | 'auto';

  /**
   * Set SO_REUSEPORT on every listener. Needed for more than one loop; where the platform or Node version
   * lacks it, the engine falls back to one loop and says so once.
   */
  reusePort?: boolean;

  /** Disable Nagle's algorithm on every connection (TCP_NODELAY). */
  noDelay?: boolean;

  /** TCP keep-alive: initial delay in milliseconds, or `false` to leave it off. */
  keepAlive?: number | false;

  /** Listen backlog. */
  backlog?: number;

  /** Most connections one loop holds at once; the excess is closed right after accept. 0 = no limit. */
  maxConnections?: number;

  /**
   * Cap on unconsumed inbound bytes a connection may hold. A handler that leaves more than this unconsumed
   * gets the connection closed with `ERR_NETLOOM_INBOUND_OVERFLOW`.
   */
  readBufferCap?: number;

  /**
   * Cap on outbound bytes a connection may have queued. A write beyond it closes the connection with
   * `ERR_NETLOOM_OUTBOUND_OVERFLOW` (a peer that never reads cannot make the server grow without bound).
   */
  writeBufferCap?: number;

  /**
   * Outbound high-water mark in bytes: when a connection's queued outbound bytes pass it, the engine stops
   * reading from that connection until they fall to {@link lowWaterMark}.
   */
  highWaterMark?: number;

  /**
   * Outbound low-water mark in bytes: reading resumes, and `onWritable` fires, at or below it. Defaults to a
   * quarter of an explicitly given {@link highWaterMark}.
   */
  lowWaterMark?: number;

  /** Close a connection that has neither read nor written for this many milliseconds. 0 = never. */
  idleTimeout?: number;

  /**
   * How long a gracefully closed connection may go without progress sending its last bytes, or wait for the
   * peer's FIN once they are out, before it is destroyed, in milliseconds.
   */
  lingerTimeout?: number;

  /**
   * How long `loop.dial` waits for a connection when the dial names no `timeout`, in milliseconds; then it
   * fails with `ERR_NETLOOM_DIAL_TIMEOUT`.
   */
  dialTimeout?: number;

  /** Milliseconds between `onTick` calls on each loop (only when the handler has `onTick`). */
  tickInterval?: number;

  /** Granularity in milliseconds of idle timeouts and connection deadlines. */
  timerResolution?: number;

  /** Default deadline in milliseconds of a graceful stop before remaining connections are force-closed. */
  shutdownDeadline?: number;

  /**
   * Times a crashed loop worker is restarted within {@link restartWindow} before the engine gives up on it.
   */
  maxRestarts?: number;

  /** Window in milliseconds over which {@link maxRestarts} is counted. */
  restartWindow?: number;

  /**
   * Fill arena buffers with a poison byte when they return to the pool, so a handler that keeps a lent
   * view past its callback reads garbage at once instead of corrupting data later. For tests and debugging.
   */
  poisonViews?: boolean;

  /** Data handed to every loop as `loop.data` (structured-cloned into each worker). */
  data?: unknown;

  /**
   * Series the loops' metrics memory holds (`loop.metrics`, `engine.metrics()`); a series past it takes
   * updates nobody reads, counted in `netloom_metrics_series_dropped_total`. Default 4,096.
   */
  metricsSeries?: number;

  /** Cells a loop's row of the metrics memory holds (a counter or gauge takes 1, a histogram its buckets + 3). Default 32,768. */
  metricsCells?: number;

  /**
   * The log ring (`LogShipper.ring` from `startLogShipper`): every loop's `loop.log` then writes into it,
   * lock-free, instead of to stderr.
   */
  logRing?: SharedArrayBuffer | null;

  /**
   * Serve TLS on the listener (see {@link TlsOptions}): certificates by SNI, rotation by file watch,
   * session tickets shared by every loop, ALPN, client certificates. Connections reach the handler once their
   * handshake is done; `conn.tls` and `conn.alpnProtocol` say what was negotiated.
   */
  tls?: TlsOptions | null;
}

/** Options with every default applied. */
export interface ResolvedOptions extends Required<Omit<EngineOptions, 'loops' | 'data' | 'logRing' | 'tls'>> {
  loops: number;
  data: unknown;
  logRing: SharedArrayBuffer | null;
  /** The `tls` option with its defaults, or null for plain TCP. */
  tls: ResolvedTls | null;
}

/** The defaults of {@link EngineOptions}. */
export const DEFAULT_OPTIONS: Readonly<ResolvedOptions> = Object.freeze({
  address: 'tcp://127.0.0.1:0',
  loops: 1,
  reusePort: true,
  noDelay: true,
  keepAlive: false,
  backlog: 511,
  maxConnections: 0,
  readBufferCap: 4 * 1024 * 1024,
  writeBufferCap: 64 * 1024 * 1024,
  highWaterMark: 1024 * 1024,
  lowWaterMark: 256 * 1024,
  idleTimeout: 0,
  lingerTimeout: 5000,
  dialTimeout: 10_000,
  tickInterval: 1000,
  timerResolution: 25,
  shutdownDeadline: 10_000,
  maxRestarts: 5,
  restartWindow: 60_000,
  poisonViews: false,
  metricsSeries: 4096,
  metricsCells: 32_768,
  data: undefined,
  logRing: null,
  tls: null,
});

function integer(name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw netloomError(
      'ERR_NETLOOM_OPTION',
      `option ${name} must be an integer >= ${min}, got ${String(value)}`,
    );
  }
  return value;
}

function boolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') {
    throw netloomError('ERR_NETLOOM_OPTION', `option ${name} must be a boolean, got ${String(value)}`);
  }
  return value;
}

/** `options` without the keys whose value is `undefined`: an option given as undefined means its default. */
export function definedOptions<T extends object>(options: T): Partial<T> {
  const out: Partial<T> = {};
  for (const key of Object.keys(options) as (keyof T)[]) {
    if (options[key] !== undefined) out[key] = options[key];
  }
  return out;
}

/** Applies defaults and validates; throws `ERR_NETLOOM_OPTION` naming the bad option. */
export function resolveOptions(given: EngineOptions = {}): ResolvedOptions {
  const options = definedOptions(given);
  const o = { ...DEFAULT_OPTIONS, ...options };
  const loops = o.loops === 'auto' ? availableParallelism() : integer('loops', o.loops, 1);
  const keepAlive = o.keepAlive === false ? false : integer('keepAlive', o.keepAlive, 0);
  const resolved: ResolvedOptions = {
    address: typeof o.address === 'string' ? o.address : String(o.address),
    loops,
    reusePort: boolean('reusePort', o.reusePort),
    noDelay: boolean('noDelay', o.noDelay),
    keepAlive,
    backlog: integer('backlog', o.backlog, 1),
    maxConnections: integer('maxConnections', o.maxConnections, 0),
    readBufferCap: integer('readBufferCap', o.readBufferCap, 1024),
    writeBufferCap: integer('writeBufferCap', o.writeBufferCap, 1024),
    highWaterMark: integer('highWaterMark', o.highWaterMark, 1),
    lowWaterMark: 0,
    idleTimeout: integer('idleTimeout', o.idleTimeout, 0),
    lingerTimeout: integer('lingerTimeout', o.lingerTimeout, 1),
    dialTimeout: integer('dialTimeout', o.dialTimeout, 1),
    tickInterval: integer('tickInterval', o.tickInterval, 1),
    timerResolution: integer('timerResolution', o.timerResolution, 1),
    shutdownDeadline: integer('shutdownDeadline', o.shutdownDeadline, 0),
    maxRestarts: integer('maxRestarts', o.maxRestarts, 0),
    restartWindow: integer('restartWindow', o.restartWindow, 1),
    poisonViews: boolean('poisonViews', o.poisonViews),
    metricsSeries: integer('metricsSeries', o.metricsSeries, 16),
    metricsCells: integer('metricsCells', o.metricsCells, 64),
    data: o.data,
    logRing: o.logRing ?? null,
    tls: o.tls === undefined || o.tls === null ? null : resolveTls(o.tls),
  };
  if (resolved.logRing !== null && !(resolved.logRing instanceof SharedArrayBuffer)) {
    throw netloomError('ERR_NETLOOM_OPTION', 'option logRing must be the SharedArrayBuffer of a log shipper');
  }
  // An explicit high-water mark without a low one gets a quarter of it, not the unrelated default.
  resolved.lowWaterMark =
    options.lowWaterMark === undefined && options.highWaterMark !== undefined
      ? Math.floor(resolved.highWaterMark / 4)
      : integer('lowWaterMark', o.lowWaterMark, 0);
  if (resolved.lowWaterMark > resolved.highWaterMark) {
    throw netloomError('ERR_NETLOOM_OPTION', 'option lowWaterMark must not exceed highWaterMark');
  }
  if (resolved.highWaterMark > resolved.writeBufferCap) {
    throw netloomError('ERR_NETLOOM_OPTION', 'option highWaterMark must not exceed writeBufferCap');
  }
  return resolved;
}
