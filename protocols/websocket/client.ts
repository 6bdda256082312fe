/**
 * A WebSocket client on `loop.dial` with the server's API (the same `WebSocket` and behaviour): the
 * opening handshake sent, the server's answer checked whole (101, `Upgrade`, `Connection`, the accept of
 * our key, a subprotocol we offered), then frames both ways, ours masked. For tests, load generators and
 * proxies; no extensions are offered.
 */
import { randomBytes } from 'node:crypto';
import type { Conn, DialTlsOptions, EventHandler, EventLoop } from '../../core/index.ts';
import { acceptFor, resolveBehavior, type WebSocketBehavior } from './server.ts';
import { WebSocket } from './websocket.ts';

/** Options of {@link connectWebSocket}. */
export interface WebSocketClientOptions<UserData> {
  /** The request path (and query). Default `/`. */
  path?: string;
  /** The Host field. Default the address dialed. */
  host?: string;
  /** Subprotocols offered, preferred first. */
  protocols?: readonly string[];
  /** More request fields (names and values checked: no CR, LF). */
  headers?: Readonly<Record<string, string>>;
  /** TLS for `wss:` (the engine's dial options). */
  tls?: DialTlsOptions;
  /** Milliseconds for the dial and the handshake together. Default 10 s. */
  timeout?: number;
  /** `ws.data` of the connection. */
  data?: UserData;
}

/** Why a client handshake failed. */
export class WebSocketHandshakeError extends Error {
  readonly code = 'ERR_WS_HANDSHAKE';
  constructor(message: string) {
    super(message);
    this.name = 'WebSocketHandshakeError';
  }
}

const MAX_HEAD = 16 * 1024;

function fieldLine(name: string, value: string): string {
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value))
    throw new WebSocketHandshakeError(`invalid request field ${JSON.stringify(name)}`);
  return `${name}: ${value}\r\n`;
}

/**
 * Opens a WebSocket to `address` (`host:port`) from `loop` (loop thread only). Resolves once the server
 * accepted the handshake (the behaviour's `open` runs first); rejects with a {@link WebSocketHandshakeError}
 * when it did not, or when the dial failed.
 */
export function connectWebSocket<UserData = undefined>(
  loop: EventLoop,
  address: string,
  behavior: WebSocketBehavior<UserData>,
  options: WebSocketClientOptions<UserData> = {},
): Promise<WebSocket<UserData>> {
  const key = randomBytes(16).toString('base64');
  const offered = options.protocols ?? [];
  const timeout = options.timeout ?? 10_000;
  return new Promise((resolve, reject) => {
    // Bad options reject like every other failure (nothing is sent with them).
    let b: ReturnType<typeof resolveBehavior<UserData>>;
    let request: string;
    try {
      b = resolveBehavior(behavior);
      const path = options.path ?? '/';
      // The request line takes visible ASCII only: no space, CR or LF could add a line of its own.
      if (!/^\/[\x21-\x7e]*$/.test(path))
        throw new WebSocketHandshakeError(`invalid path ${JSON.stringify(path)}`);
      request = `GET ${path} HTTP/1.1\r\n`;
      request += fieldLine('host', options.host ?? address);
      request += 'upgrade: websocket\r\nconnection: Upgrade\r\n';
      request += `sec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\n`;
      if (offered.length > 0) request += fieldLine('sec-websocket-protocol', offered.join(', '));
      for (const [name, value] of Object.entries(options.headers ?? {})) request += fieldLine(name, value);
      request += '\r\n';
    } catch (err) {
      reject(err);
      return;
    }
    const started = loop.now();
    let settled = false;
    const fail = (conn: Conn, why: string) => {
      if (!settled) {
        settled = true;
        reject(new WebSocketHandshakeError(why));
      }
      conn.close();
    };
    const handler: EventHandler<WebSocket<UserData>> = {
      onOpen(conn) {
        // The handshake has what is left of the time the dial began with.
        conn.setDeadline(Math.max(1, timeout - (loop.now() - started)));
        conn.writeLatin1(request);
      },
      onTraffic(conn) {
        const ws = conn.context;
        if (ws !== undefined) {
          ws.traffic();
          return;
        }
        const head = conn.peek(MAX_HEAD + 4).toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) {
          if (conn.inboundBuffered > MAX_HEAD) fail(conn, 'a handshake answer over 16 KiB');
          return;
        }
        conn.discard(end + 4);
        const lines = head.slice(0, end).split('\r\n');
        if (!/^HTTP\/1\.1 101 /.test(lines[0] ?? '')) {
          fail(conn, `the server answered ${JSON.stringify(lines[0])}`);
          return;
        }
        const fields = new Map<string, string[]>();
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':');
          if (colon <= 0) continue;
          const name = line.slice(0, colon).trim().toLowerCase();
          const list = fields.get(name) ?? [];
          list.push(line.slice(colon + 1).trim());
          fields.set(name, list);
        }
        const one = (name: string) => {
          const v = fields.get(name);
          return v === undefined || v.length !== 1 ? undefined : v[0];
        };
        if (one('upgrade')?.toLowerCase() !== 'websocket') return fail(conn, 'no Upgrade: websocket');
        if (!/(^|,)\s*upgrade\s*(,|$)/i.test(one('connection') ?? ''))
          return fail(conn, 'no Connection: upgrade');
        if (one('sec-websocket-accept') !== acceptFor(key)) return fail(conn, 'a wrong Sec-WebSocket-Accept');
        if (fields.has('sec-websocket-extensions')) return fail(conn, 'an extension we did not offer');
        const protocol = one('sec-websocket-protocol') ?? '';
        if (protocol !== '' && !offered.includes(protocol))
          return fail(conn, `a subprotocol we did not offer: ${protocol}`);
        if (fields.has('sec-websocket-protocol') && protocol === '')
          return fail(conn, 'a bad Sec-WebSocket-Protocol');
        const socket = new WebSocket<UserData>(
          conn as Conn,
          b,
          options.data as UserData,
          protocol,
          0,
          1024,
          null,
          true,
        );
        conn.context = socket;
        settled = true;
        try {
          b.open?.(socket);
        } catch (err) {
          socket.handlerFailed('open', err);
        }
        resolve(socket);
        if (conn.inboundBuffered > 0) socket.traffic();
      },
      onDeadline(conn) {
        const ws = conn.context;
        if (ws === undefined) fail(conn, 'the handshake timed out');
        else ws.deadline();
      },
      onWritable(conn) {
        conn.context?.writable();
      },
      onEof(conn) {
        const ws = conn.context;
        if (ws === undefined) fail(conn, 'the server closed during the handshake');
        else ws.eof();
      },
      onClose(conn, err) {
        const ws = conn.context;
        if (ws !== undefined) ws.closed();
        else if (!settled) {
          settled = true;
          reject(new WebSocketHandshakeError(`the connection failed: ${err?.message ?? 'closed'}`));
        }
      },
    };
    try {
      loop.dial<WebSocket<UserData>>(address, handler, { tls: options.tls, timeout });
    } catch (err) {
      settled = true;
      reject(new WebSocketHandshakeError(`the dial failed: ${(err as Error).message}`));
    }
  });
}
