import {
  type Conn,
  definedOptions,
  type EventHandler,
  type EventLoop,
  netloomError,
} from '../../core/index.ts';
import {
  type ExchangeInfo,
  type ServerOptions as Http1Options,
  server as http1Server,
  type Request,
  type RequestHandler,
  type Response,
} from '../http1/index.ts';
import { Http2Connection } from './connection.ts';
import { MAX_MAX_FRAME_SIZE, MAX_WINDOW, MIN_MAX_FRAME_SIZE, PREFACE } from './frames.ts';

/**
 * HTTP/2 settings and limits (RFC 9113). Each flood limit answers as the RFC and the CVEs it guards against
 * say: a stream error resets that stream, a connection error sends GOAWAY with its code and closes.
 */
export interface Http2Options {
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised and enforced (REFUSED_STREAM beyond it). Default 100. */
  maxConcurrentStreams?: number;
  /**
   * SETTINGS_INITIAL_WINDOW_SIZE: what each request body may send ahead of the handler (at least 1,024).
   * Default 65,535.
   */
  initialWindowSize?: number;
  /** The connection's receive window: request body bytes buffered per connection at most. Default 1 MiB. */
  connectionWindowSize?: number;
  /** SETTINGS_MAX_FRAME_SIZE we accept. Default 16,384. */
  maxFrameSize?: number;
  /**
   * SETTINGS_MAX_HEADER_LIST_SIZE: decoded header bytes a request may carry (RFC 7541 sizes); beyond it the
   * stream is answered 431 (an HPACK bomb is stopped here). Default 64 KiB.
   */
  maxHeaderListSize?: number;
  /**
   * Encoded header block bytes buffered across HEADERS and CONTINUATION before decoding; beyond it GOAWAY
   * ENHANCE_YOUR_CALM (the CONTINUATION flood, CVE-2024-27983). Default 64 KiB.
   */
  maxHeaderBlockSize?: number;
  /** CONTINUATION frames one header block may take; beyond it GOAWAY ENHANCE_YOUR_CALM. Default 64. */
  maxContinuations?: number;
  /**
   * Streams the client may reset before their response ended (and stream errors it may cause), per second,
   * with a burst of twice as many; beyond it GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).
   * A reset stream whose handler still runs holds its concurrency slot until the handler settles, so the
   * work of cancelled streams stays bounded by `maxConcurrentStreams`. Default 100.
   */
  maxResetsPerSecond?: number;
  /**
   * Frames that do no work for the peer (PING, SETTINGS, PRIORITY, empty DATA, empty HEADERS or
   * CONTINUATION, WINDOW_UPDATE for nothing sent, unknown types, refused streams), per second with a burst
   * of twice as many; beyond it GOAWAY ENHANCE_YOUR_CALM. Default 1,000.
   */
  maxControlFramesPerSecond?: number;
  /** Milliseconds the client has to acknowledge our SETTINGS; then GOAWAY SETTINGS_TIMEOUT. Default 10 s. */
  settingsTimeout?: number;
  /** Milliseconds a connection without streams is kept; then GOAWAY NO_ERROR and close. Default 60 s. */
  idleTimeout?: number;
  /**
   * Milliseconds a response may wait for a flow-control window the client keeps shut; then the stream is
   * reset (CANCEL). Default 30 s.
   */
  sendTimeout?: number;
}

/** Options of the {@link server} serving both versions: HTTP/1.1's, plus `http2` (false: HTTP/1.1 only). */
export interface ServerOptions extends Http1Options {
  http2?: Http2Options | false;
}

/** @internal What every HTTP/2 connection of a server shares. */
export interface Http2Core {
  readonly handler: RequestHandler;
  readonly onResponse: ((req: Request, res: Response, exchange: ExchangeInfo) => void) | undefined;
  readonly timing: boolean;
  readonly clientHalfClose: 'serve' | 'abort';
  readonly maxBodySize: number;
  readonly headersTimeout: number;
  readonly requestTimeout: number;
  readonly maxConcurrentStreams: number;
  readonly initialWindowSize: number;
  readonly connectionWindowSize: number;
  readonly maxFrameSize: number;
  readonly maxHeaderListSize: number;
  readonly maxHeaderBlockSize: number;
  readonly maxContinuations: number;
  readonly maxResetsPerSecond: number;
  readonly maxResetsBurst: number;
  readonly maxControlFramesPerSecond: number;
  readonly maxControlFramesBurst: number;
  readonly settingsTimeout: number;
  readonly idleTimeout: number;
  readonly sendTimeout: number;
  /** How often a connection's timers are looked at (their resolution). */
  readonly sweepInterval: number;
}

const H2_DEFAULTS: Required<Http2Options> = {
  maxConcurrentStreams: 100,
  initialWindowSize: 65_535,
  connectionWindowSize: 1024 * 1024,
  maxFrameSize: MIN_MAX_FRAME_SIZE,
  maxHeaderListSize: 64 * 1024,
  maxHeaderBlockSize: 64 * 1024,
  maxContinuations: 64,
  maxResetsPerSecond: 100,
  maxControlFramesPerSecond: 1000,
  settingsTimeout: 10_000,
  idleTimeout: 60_000,
  sendTimeout: 30_000,
};

function bounded(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw netloomError(
      'ERR_NETLOOM_OPTION',
      `http2 option ${name} must be an integer from ${min} to ${max}, got ${String(value)}`,
    );
  return value;
}

function http2Core(handler: RequestHandler, options: ServerOptions, given: Http2Options): Http2Core {
  const o = { ...H2_DEFAULTS, ...definedOptions(given) };
  const big = 2 ** 31 - 1;
  bounded('maxConcurrentStreams', o.maxConcurrentStreams, 1, big);
  bounded('initialWindowSize', o.initialWindowSize, 1024, MAX_WINDOW);
  bounded('connectionWindowSize', o.connectionWindowSize, 65_535, MAX_WINDOW);
  bounded('maxFrameSize', o.maxFrameSize, MIN_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE);
  bounded('maxHeaderListSize', o.maxHeaderListSize, 1024, big);
  bounded('maxHeaderBlockSize', o.maxHeaderBlockSize, 1024, big);
  bounded('maxContinuations', o.maxContinuations, 1, big);
  bounded('maxResetsPerSecond', o.maxResetsPerSecond, 1, big);
  bounded('maxControlFramesPerSecond', o.maxControlFramesPerSecond, 1, big);
  bounded('settingsTimeout', o.settingsTimeout, 1, big);
  bounded('idleTimeout', o.idleTimeout, 1, big);
  bounded('sendTimeout', o.sendTimeout, 1, big);
  const timing = options.accessLog !== undefined && options.accessLog !== false;
  const sweepInterval = Math.max(
    10,
    Math.min(1000, o.settingsTimeout, o.idleTimeout, o.sendTimeout, options.requestTimeout ?? 60_000) / 2,
  );
  return {
    handler,
    onResponse: options.onResponse,
    timing,
    clientHalfClose: options.clientHalfClose ?? 'serve',
    maxBodySize: options.maxBodySize ?? 1024 * 1024,
    headersTimeout: options.headersTimeout ?? 10_000,
    requestTimeout: options.requestTimeout ?? 60_000,
    maxConcurrentStreams: o.maxConcurrentStreams,
    initialWindowSize: o.initialWindowSize,
    connectionWindowSize: o.connectionWindowSize,
    maxFrameSize: o.maxFrameSize,
    maxHeaderListSize: o.maxHeaderListSize,
    maxHeaderBlockSize: o.maxHeaderBlockSize,
    maxContinuations: o.maxContinuations,
    maxResetsPerSecond: o.maxResetsPerSecond,
    maxResetsBurst: o.maxResetsPerSecond * 2,
    maxControlFramesPerSecond: o.maxControlFramesPerSecond,
    maxControlFramesBurst: o.maxControlFramesPerSecond * 2,
    settingsTimeout: o.settingsTimeout,
    idleTimeout: o.idleTimeout,
    sendTimeout: o.sendTimeout,
    sweepInterval,
  };
}

/** Whether the bytes buffered on `conn` are the HTTP/2 preface so far: 1 yes, 0 not yet known, -1 no. */
function prefaceSoFar(conn: Conn): number {
  const n = Math.min(conn.inboundBuffered, PREFACE.length);
  const buf = conn.buffer;
  const off = conn.offset;
  for (let i = 0; i < n; i++) if (buf[off + i] !== PREFACE[i]) return -1;
  return n === PREFACE.length ? 1 : 0;
}

type Context = Http2Connection | object | null;

/**
 * An HTTP server as an engine event handler, serving HTTP/1.1 and HTTP/2 on one listener with one handler
 * (`req.httpVersion` tells them apart): HTTP/2 with prior knowledge is recognised by its connection preface
 * on a cleartext listener, and over TLS by ALPN `h2` (offer it with the engine's
 * `tls.alpnProtocols: ['h2', 'http/1.1']`). `Upgrade: h2c` is not honoured (a request that switches
 * protocols mid-connection is how h2c smuggling passes a proxy's filters); such a request is served as
 * HTTP/1.1. Streams of one connection run concurrently; responses go out as they complete.
 *
 * @example
 * export default server((req, res) => {
 *   res.header('content-type', 'text/plain').end(`Hello over HTTP/${req.httpVersion}`);
 * });
 */
export function server(handler: RequestHandler, options: ServerOptions = {}): EventHandler<Context> {
  const { http2, ...http1Options } = options;
  const h1 = http1Server(handler, http1Options) as unknown as EventHandler<Context>;
  if (http2 === false) return h1;
  const core = http2Core(handler, options, http2 ?? {});
  const live = new Set<Http2Connection>();
  const open = (conn: Conn<Context>): Http2Connection => {
    const session = new Http2Connection(conn as Conn, core);
    live.add(session);
    return session;
  };
  return {
    onOpen(conn) {
      if (conn.alpnProtocol === 'h2') {
        open(conn);
        return;
      }
      h1.onOpen?.(conn);
    },
    onTraffic(conn) {
      const ctx = conn.context;
      if (ctx instanceof Http2Connection) {
        ctx.process();
        return;
      }
      if (ctx === undefined && !conn.secure) {
        const verdict = prefaceSoFar(conn);
        if (verdict === 0) return;
        if (verdict === 1) {
          open(conn).process();
          return;
        }
      }
      h1.onTraffic!(conn);
    },
    onDeadline(conn) {
      const ctx = conn.context;
      if (ctx instanceof Http2Connection) ctx.onDeadline();
      else h1.onDeadline?.(conn);
    },
    onEof(conn) {
      const ctx = conn.context;
      if (ctx instanceof Http2Connection) ctx.onEof();
      else h1.onEof?.(conn);
    },
    onWritable(conn) {
      const ctx = conn.context;
      if (ctx instanceof Http2Connection) ctx.onWritable();
      else h1.onWritable?.(conn);
    },
    onClose(conn, err) {
      const ctx = conn.context;
      if (ctx instanceof Http2Connection) {
        live.delete(ctx);
        conn.context = null;
        ctx.onClosed(err);
        return;
      }
      h1.onClose?.(conn, err);
    },
    onShutdown(loop: EventLoop) {
      h1.onShutdown?.(loop);
      // GOAWAY first: streams in flight end, the client opens no more (idle connections then close).
      for (const session of live) if (session.conn.loop === loop) session.goaway();
    },
  };
}
