import {
  type Conn,
  definedOptions,
  type EventHandler,
  type EventLoop,
  netloomError,
} from '../../core/index.ts';
import type { ExchangeInfo, Request, Response } from './api.ts';
import type { BodyLimits } from './body.ts';
import { Exchange } from './exchange.ts';
import type { HeadLimits } from './head.ts';

/** A request handler: respond through `res`; may be async. `req` and `res` are valid until `res.end()`. */
export type RequestHandler = (req: Request, res: Response) => void | Promise<void>;

/**
 * Options of {@link server}. Every limit answers with the status RFC 9110/9112 names for it, then closes the
 * connection.
 */
export interface ServerOptions {
  /** Longest request line in bytes; longer gets 414. Default 8 KiB. */
  maxRequestLine?: number;
  /** Largest header section in bytes; larger gets 431. Default 16 KiB. */
  maxHeaderBytes?: number;
  /** Most header fields; more get 431. Default 100. */
  maxHeaders?: number;
  /** Largest request body in bytes (Content-Length or chunked); larger gets 413. Default 1 MiB. */
  maxBodySize?: number;
  /** Longest chunk-size line (size and extensions) in bytes; longer gets 400. Default 4 KiB. */
  maxChunkLine?: number;
  /**
   * Body bytes that may wait in a connection's buffer before the handler reads them (and bytes of pipelined
   * requests waiting for an earlier response); beyond it reading pauses. Default 64 KiB.
   */
  maxBufferedBody?: number;
  /** Refuse HTTP/1.1 requests without Host (RFC 9112 §3.2). Default true. A duplicate Host is always refused. */
  requireHost?: boolean;
  /** Milliseconds a client has to send a complete request head (slowloris guard); then 408. Default 10 s. */
  headersTimeout?: number;
  /** Milliseconds a client has to send a request body after its head; then 408. Default 60 s. */
  requestTimeout?: number;
  /** Milliseconds an idle keep-alive connection is kept. Default 5 s. */
  keepAliveTimeout?: number;
  /**
   * What a client's FIN (it stopped sending) means while its request is being answered: `serve` answers it
   * and every complete request buffered before the FIN, then closes (RFC 9112 §9.6 allows half-closed
   * clients); `abort` takes the client as gone, as node:http and nginx do: the request is abandoned
   * (`req.signal` aborts with `ERR_HTTP_CLOSED`) and the connection closed. Default `serve`; the gateway
   * uses `abort`, so a client that leaves frees its upstream connection at once.
   */
  clientHalfClose?: 'serve' | 'abort';
  /** Called when each response ends (access logs, metrics). Runs on the loop thread; keep it cheap. */
  onResponse?: (req: Request, res: Response, exchange: ExchangeInfo) => void;
  /**
   * Write an access record for every response through `loop.log.access` (the log ring, when the engine has
   * one): method, path, status, bytes, duration, remote address, trace and request ids, and the gateway's
   * route and domain when set in `req.locals`. The ids come from `req.locals.requestId` and
   * `req.locals.traceparent` when a handler set them (a proxy that generated them), else from the request's
   * `x-request-id` and `traceparent`. With `{ key: 'x-user-id' }` sampling is deterministic per value of
   * that header.
   */
  accessLog?: boolean | { key?: string };
}

const DEFAULTS: Required<Omit<ServerOptions, 'onResponse' | 'accessLog'>> = {
  maxRequestLine: 8 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxHeaders: 100,
  maxBodySize: 1024 * 1024,
  maxChunkLine: 4 * 1024,
  maxBufferedBody: 64 * 1024,
  requireHost: true,
  headersTimeout: 10_000,
  requestTimeout: 60_000,
  keepAliveTimeout: 5_000,
  clientHalfClose: 'serve',
};

/** @internal What every connection's exchange shares. */
export interface ServerCore {
  readonly handler: RequestHandler;
  readonly options: Required<Omit<ServerOptions, 'onResponse' | 'accessLog'>>;
  /** Take precise start times (access logs want durations finer than the loop's coarse clock). */
  readonly timing: boolean;
  readonly headLimits: HeadLimits;
  readonly bodyLimits: BodyLimits;
  readonly onResponse: ServerOptions['onResponse'];
  /** Exchanges of idle connections, for the next connection that has bytes (one thread: no locking). */
  readonly pool: Exchange[];
  /** Most exchanges kept in the pool. */
  readonly poolSize: number;
}

/** Exchanges kept for reuse per server: enough for every connection busy at once on a loop, bounded. */
const POOL_SIZE = 1024;

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The response hook: the user's, an access logger, or both. */
function accessLogger(options: ServerOptions): ServerOptions['onResponse'] {
  const user = options.onResponse;
  if (options.accessLog === undefined || options.accessLog === false) return user;
  const key = typeof options.accessLog === 'object' ? options.accessLog.key : undefined;
  return (req, res, ex) => {
    user?.(req, res, ex);
    const log = ex.conn.loop.log;
    if (log.access === undefined) return;
    const locals = req.locals;
    const traceparent =
      typeof locals?.traceparent === 'string' ? locals.traceparent : req.header('traceparent');
    const requestId = typeof locals?.requestId === 'string' ? locals.requestId : req.header('x-request-id');
    log.access(
      {
        method: req.method,
        path: req.path,
        status: res.statusCode,
        bytes: res.bytesWritten,
        duration: Math.round((performance.now() - ex.startedAt) * 1000) / 1000,
        remote: req.remoteAddress,
        traceId: traceparent === undefined ? undefined : TRACEPARENT.exec(traceparent)?.[1],
        requestId,
        route: typeof locals?.route === 'string' ? locals.route : undefined,
        domain: typeof locals?.domain === 'string' ? locals.domain : undefined,
      },
      key === undefined ? undefined : req.header(key),
    );
  };
}

function positiveInt(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
    throw netloomError(
      'ERR_NETLOOM_OPTION',
      `http1 option ${name} must be a positive integer, got ${String(value)}`,
    );
  return value;
}

/**
 * An HTTP/1.1 server as an engine event handler: export it from a handler module and `serve` it.
 *
 * @example
 * export default server((req, res) => {
 *   res.header('content-type', 'text/plain').end('Hello, World!');
 * });
 */
export function server(handler: RequestHandler, options: ServerOptions = {}): EventHandler<Exchange | null> {
  const o = { ...DEFAULTS, ...definedOptions(options) };
  for (const key of Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]) {
    if (key !== 'requireHost' && key !== 'clientHalfClose') positiveInt(key, o[key]);
  }
  if (o.clientHalfClose !== 'serve' && o.clientHalfClose !== 'abort')
    throw netloomError(
      'ERR_NETLOOM_OPTION',
      `http1 option clientHalfClose must be "serve" or "abort", got ${String(o.clientHalfClose)}`,
    );
  if (typeof o.requireHost !== 'boolean')
    throw netloomError(
      'ERR_NETLOOM_OPTION',
      `http1 option requireHost must be a boolean, got ${String(o.requireHost)}`,
    );
  const core: ServerCore = {
    handler,
    options: o,
    headLimits: {
      maxStartLine: o.maxRequestLine,
      maxHeaderBytes: o.maxHeaderBytes,
      maxHeaders: o.maxHeaders,
      requireHost: o.requireHost,
    },
    bodyLimits: {
      maxBodySize: o.maxBodySize,
      maxChunkLine: o.maxChunkLine,
      maxTrailerBytes: o.maxHeaderBytes,
      maxTrailers: o.maxHeaders,
    },
    onResponse: accessLogger(options),
    timing: options.accessLog !== undefined && options.accessLog !== false,
    pool: [],
    poolSize: POOL_SIZE,
  };
  const headersTimeout = o.headersTimeout;
  // A connection has an exchange only while it carries a request (or part of one); idle, it has none.
  return {
    onOpen(conn: Conn<Exchange | null>) {
      // `undefined` until the first bytes (then `null` whenever it is idle without an exchange): the first
      // request's head must arrive within headersTimeout of the connection opening.
      conn.setDeadline(headersTimeout);
    },
    onTraffic(conn: Conn<Exchange | null>) {
      let ex = conn.context;
      if (ex === null || ex === undefined) {
        const first = ex === undefined;
        ex = core.pool.pop() ?? new Exchange(core);
        ex.bind(conn, first);
      }
      ex.process();
    },
    onDeadline(conn: Conn<Exchange | null>) {
      const ex = conn.context;
      if (ex === null || ex === undefined)
        conn.close(); // idle (or never sent a byte) for too long
      else ex.onDeadline();
    },
    onEof(conn: Conn<Exchange | null>) {
      const ex = conn.context;
      if (ex === null || ex === undefined) conn.close();
      else ex.onEof();
    },
    onWritable(conn: Conn<Exchange | null>) {
      conn.context?.onWritable();
    },
    onClose(conn: Conn<Exchange | null>, err: Error | undefined) {
      const ex = conn.context;
      if (ex === null || ex === undefined) return;
      conn.context = null;
      if (ex.onClosed(err) && core.pool.length < core.poolSize) core.pool.push(ex);
    },
    onShutdown(_loop: EventLoop) {
      // Responses from now on carry `connection: close` (the exchange reads loop.shuttingDown); the engine
      // closes idle connections itself. One handler object may serve engine after engine.
    },
  };
}
