/**
 * The WebSocket upgrade (RFC 6455 §4.2) on the HTTP/1.1 codec's `res.upgrade`, and the behaviour a server
 * gives its connections (uWebSockets' shape: `open`, `message`, `drain`, `close`, limits). The handshake is
 * judged whole before anything is switched: GET on HTTP/1.1 with `Upgrade: websocket`, a key of 16 base64
 * octets, version 13 (else 426 naming it), the origin by a hook, the subprotocol chosen from the client's.
 */
import { createHash } from 'node:crypto';
import {
  type Conn,
  definedOptions,
  type EventHandler,
  type EventLoop,
  netloomError,
} from '../../core/index.ts';
import type { Request, Response } from '../http1/index.ts';
import { type CompressionOptions, negotiateDeflate } from './deflate.ts';
import { Topics } from './topics.ts';
import { WebSocket } from './websocket.ts';

/** How a server's WebSocket connections behave. Callbacks run on the loop thread. */
export interface WebSocketBehavior<UserData = unknown> {
  /** The connection is open. */
  open?(ws: WebSocket<UserData>): void;
  /** A whole message: a string for text, a Buffer (valid during the call: copy what you keep) for binary. */
  message(ws: WebSocket<UserData>, message: string | Buffer, binary: boolean): void;
  /** The outbound buffer emptied after `send` returned 'buffered'. */
  drain?(ws: WebSocket<UserData>): void;
  /** The connection ended: the close code agreed (1006 when no close frame came) and the reason. */
  close?(ws: WebSocket<UserData>, code: number, reason: string): void;
  /** Largest message accepted (all fragments); larger closes with 1009 before it is buffered. Default 16 MiB. */
  maxPayload?: number;
  /** Milliseconds without a frame from the client before it is pinged (then closed with 1001). Default 120 s. */
  idleTimeout?: number;
  /** Ping an idle client once before closing it. Default true. */
  sendPingsAutomatically?: boolean;
  /** Milliseconds the client has to answer our close frame. Default 5 s. */
  closeTimeout?: number;
  /** Outbound bytes past which `send` drops messages. Default 16 MiB. */
  maxBackpressure?: number;
  /** Close (1008) instead of dropping past `maxBackpressure`. Default false. */
  closeOnBackpressureLimit?: boolean;
  /** Subprotocols the server speaks, preferred first; one the client offers is chosen. */
  protocols?: readonly string[];
  /** The name of this server's topics across loops (two servers in one handler need two). Default 'default'. */
  topics?: string;
  /** Whether a request from `origin` (undefined: none sent) may open a connection; refused is 403. */
  checkOrigin?(origin: string | undefined, req: Request): boolean;
  /**
   * permessage-deflate (RFC 7692) with clients that offer it: `true`, or its options. Messages are
   * compressed each on its own (no context takeover either way: no zlib state per connection). Default off.
   */
  compression?: boolean | CompressionOptions;
}

/** @internal The behaviour with every default filled in. */
export type ResolvedBehavior<UserData> = WebSocketBehavior<UserData> &
  Required<
    Pick<
      WebSocketBehavior<UserData>,
      | 'maxPayload'
      | 'idleTimeout'
      | 'sendPingsAutomatically'
      | 'closeTimeout'
      | 'maxBackpressure'
      | 'closeOnBackpressureLimit'
    >
  >;

const DEFAULTS = {
  maxPayload: 16 * 1024 * 1024,
  idleTimeout: 120_000,
  sendPingsAutomatically: true,
  closeTimeout: 5_000,
  maxBackpressure: 16 * 1024 * 1024,
  closeOnBackpressureLimit: false,
};

/** @internal The behaviour with its defaults, checked (servers and clients alike). */
export function resolveBehavior<UserData>(behavior: WebSocketBehavior<UserData>): ResolvedBehavior<UserData> {
  const b = { ...DEFAULTS, ...definedOptions(behavior) } as ResolvedBehavior<UserData>;
  for (const key of ['maxPayload', 'idleTimeout', 'closeTimeout', 'maxBackpressure'] as const) {
    const v = b[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
      throw netloomError(
        'ERR_NETLOOM_OPTION',
        `websocket option ${key} must be a positive integer, got ${String(v)}`,
      );
  }
  if (typeof b.message !== 'function')
    throw netloomError(
      'ERR_NETLOOM_OPTION',
      'websocket behavior needs a message(ws, message, binary) function',
    );
  return b;
}

/** The `Sec-WebSocket-Accept` value that answers a `Sec-WebSocket-Key` of `key` (RFC 6455 §4.2.2). */
export function acceptFor(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

/** Why an upgrade request is refused: the status, and a reason for the body. */
function refuse(res: Response, status: number, reason: string, headers: Record<string, string> = {}): false {
  res.status(status).header('content-type', 'text/plain; charset=utf-8');
  for (const [k, v] of Object.entries(headers)) res.header(k, v);
  res.end(`${reason}\n`);
  return false;
}

/** A server's WebSockets: `upgrade` turns a request into a connection with this behaviour. */
export interface WebSocketServer<UserData> {
  /**
   * Answers `req` with the handshake and switches the connection to WebSocket (true), or refuses it with
   * the status the RFC names (false; the response is sent). `data` becomes `ws.data`.
   */
  upgrade(req: Request, res: Response, data?: UserData): boolean;
  /** Publishes to `topic`'s subscribers on every loop of the engine (this loop's at once). */
  publish(topic: string, message: string | Uint8Array, binary?: boolean): void;
  /** This loop's subscribers of `topic`. */
  subscribers(topic: string): number;
  /**
   * Joins the engine's pub/sub channel for `loop` (the first upgrade does it): call it from the handler
   * module's factory when this loop publishes before any connection came.
   */
  attach(loop: EventLoop): void;
}

/**
 * WebSockets with `behavior`, to be upgraded to from a request handler:
 *
 * @example
 * const ws = webSocket({ message: (ws, msg, binary) => ws.send(msg, binary) });
 * export default server((req, res) => {
 *   if (req.path === '/ws') ws.upgrade(req, res);
 *   else res.end('hello');
 * });
 */
export function webSocket<UserData = undefined>(
  behavior: WebSocketBehavior<UserData>,
): WebSocketServer<UserData> {
  const b = resolveBehavior(behavior);
  const protocols = b.protocols ?? [];
  const topics = new Topics(b.topics ?? 'default');
  const compression: CompressionOptions | null =
    b.compression === true
      ? {}
      : b.compression === false || b.compression === undefined
        ? null
        : b.compression;
  const threshold = compression?.threshold ?? 1024;
  if (compression !== null) {
    const bits = compression.clientMaxWindowBits ?? 15;
    if (!Number.isInteger(bits) || bits < 8 || bits > 15)
      throw netloomError(
        'ERR_NETLOOM_OPTION',
        `websocket compression.clientMaxWindowBits must be 8-15, got ${bits}`,
      );
    if (!Number.isInteger(threshold) || threshold < 0)
      throw netloomError(
        'ERR_NETLOOM_OPTION',
        `websocket compression.threshold must be >= 0, got ${threshold}`,
      );
  }
  const shared: EventHandler<WebSocket<UserData>> = {
    onTraffic(conn) {
      conn.context?.traffic();
    },
    onDeadline(conn) {
      conn.context?.deadline();
    },
    onWritable(conn) {
      conn.context?.writable();
    },
    onEof(conn) {
      const ws = conn.context;
      if (ws === undefined) conn.close();
      else ws.eof();
    },
    onClose(conn) {
      conn.context?.closed();
    },
  };
  return {
    publish(topic, message, binary = typeof message !== 'string') {
      topics.publish(topic, message, binary, null);
    },
    subscribers(topic) {
      return topics.count(topic);
    },
    attach(loop) {
      topics.attach(loop);
    },
    upgrade(req, res, data) {
      if (req.method !== 'GET') return refuse(res, 405, 'a WebSocket opens with GET', { allow: 'GET' });
      if (req.httpVersion !== '1.1') return refuse(res, 400, 'a WebSocket opens over HTTP/1.1');
      // `Upgrade` lists protocols (RFC 9110 §7.8): websocket among them is enough, and is what the 101 names.
      if (!(req.upgrade ?? '').split(',').some((p) => p.trim().toLowerCase() === 'websocket'))
        return refuse(res, 426, 'this resource needs a WebSocket upgrade', { upgrade: 'websocket' });
      // Each of these fields is allowed once (RFC 6455 §11.3.1, §11.3.5).
      const versions = req.headerValues('sec-websocket-version');
      if (versions.length > 1) return refuse(res, 400, 'Sec-WebSocket-Version more than once');
      if (versions[0] !== '13')
        return refuse(res, 426, 'unsupported WebSocket version', { 'sec-websocket-version': '13' });
      const keys = req.headerValues('sec-websocket-key');
      if (keys.length !== 1 || !KEY.test(keys[0]!)) return refuse(res, 400, 'a bad Sec-WebSocket-Key');
      const key = keys[0]!;
      // A body would be read as frames once the connection switched.
      if (req.hasBody) return refuse(res, 400, 'an upgrade request with a body');
      if (b.checkOrigin !== undefined && !b.checkOrigin(req.header('origin'), req))
        return refuse(res, 403, 'origin not allowed');
      let protocol = '';
      const offered = req
        .headerValues('sec-websocket-protocol')
        .flatMap((v) => v.split(',').map((p) => p.trim()));
      for (const p of protocols) {
        if (offered.includes(p)) {
          protocol = p;
          break;
        }
      }
      const accept = acceptFor(key);
      const headers: Record<string, string> = { upgrade: 'websocket', 'sec-websocket-accept': accept };
      if (protocol !== '') headers['sec-websocket-protocol'] = protocol;
      const deflate =
        compression === null
          ? null
          : negotiateDeflate(
              req.headerValues('sec-websocket-extensions').join(', ') || undefined,
              compression,
            );
      if (deflate !== null) headers['sec-websocket-extensions'] = deflate.header;
      let socket: WebSocket<UserData> | null = null;
      const handler: EventHandler<WebSocket<UserData>> = {
        ...shared,
        // The engine stops: the connection ends with 1001 (Going Away), not a bare TCP close.
        onShutdown() {
          if (socket?.open) socket.close(1001, 'server shutting down');
        },
        onOpen(conn: Conn<WebSocket<UserData>>) {
          const ws = new WebSocket<UserData>(
            conn as Conn,
            b,
            data as UserData,
            protocol,
            deflate === null ? 0 : deflate.serverWindowBits,
            threshold,
            topics,
          );
          topics.attach(conn.loop);
          conn.context = ws;
          socket = ws;
          try {
            b.open?.(ws);
          } catch (err) {
            ws.handlerFailed('open', err);
          }
        },
      };
      res.upgrade(handler as EventHandler, headers);
      return true;
    },
  };
}
