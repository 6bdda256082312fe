// Helpers for the h2-review tests: a node:http2 upstream, a raw frame-level upstream, h2 requests.
import http2 from 'node:http2';
import net from 'node:net';
import { HpackDecoder, HpackEncoder } from 'netloom/http2';

export interface H2Upstream {
  port: number;
  sessions: number;
  streams: number;
  server: http2.Http2Server;
  close(): Promise<void>;
}

export async function h2Upstream(
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, up: H2Upstream) => void,
  options: http2.ServerOptions = {},
): Promise<H2Upstream> {
  const server = http2.createServer(options);
  const sockets = new Set<net.Socket>();
  const up: H2Upstream = {
    port: 0,
    sessions: 0,
    streams: 0,
    server,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('session', (sess) => {
    up.sessions++;
    sess.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    up.streams++;
    stream.on('error', () => {});
    onStream(stream, headers, up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.port = (server.address() as net.AddressInfo).port;
  return up;
}

export function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer | string,
) {
  return new Promise<{ status: number; body: string; trailers: http2.IncomingHttpHeaders }>(
    (resolve, reject) => {
      const req = session.request(headers);
      let status = 0;
      let data = '';
      let trailers: http2.IncomingHttpHeaders = {};
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('trailers', (t) => (trailers = t));
      req.on('data', (d: Buffer) => (data += d.toString()));
      req.on('end', () => resolve({ status, body: data, trailers }));
      req.on('error', reject);
      req.end(body);
    },
  );
}

export const T = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8 };

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)) {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  payload.copy(b, 9);
  return b;
}

export interface RawFrame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
  fields?: [string, string][];
  decodeError?: string;
}

export interface RawConn {
  socket: net.Socket;
  frames: RawFrame[];
  enc: HpackEncoder;
  index: number;
  headers(stream: number, fields: [string, string][], end: boolean): void;
  data(stream: number, payload: Buffer, end: boolean): void;
  send(b: Buffer): void;
}

/**
 * A raw h2 upstream: sends an empty SETTINGS (or `settings`), acks the client's, and calls `onFrame` with
 * each frame the gateway sends (HEADERS decoded).
 */
export async function rawH2Upstream(
  onFrame: (c: RawConn, f: RawFrame) => void,
  settings: [number, number][] = [],
  onConnect?: (c: RawConn) => void,
) {
  const sockets = new Set<net.Socket>();
  const conns: RawConn[] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const dec = new HpackDecoder({ maxHeaderListSize: 1 << 24 });
    const c: RawConn = {
      socket,
      frames: [],
      enc: new HpackEncoder({ sensitive: [] }),
      index: conns.length,
      headers(stream, fields, end) {
        const block = Buffer.from(c.enc.encode(fields));
        c.send(frame(T.HEADERS, 4 | (end ? 1 : 0), stream, block));
      },
      data(stream, payload, end) {
        c.send(frame(T.DATA, end ? 1 : 0, stream, payload));
      },
      send(b) {
        if (!socket.destroyed) socket.write(b);
      },
    };
    conns.push(c);
    const p = Buffer.alloc(settings.length * 6);
    settings.forEach(([id, v], i) => {
      p.writeUInt16BE(id, i * 6);
      p.writeUInt32BE(v, i * 6 + 2);
    });
    c.send(frame(T.SETTINGS, 0, 0, p));
    onConnect?.(c);
    let buf = Buffer.alloc(0);
    let preface = false;
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!preface) {
        if (buf.length < 24) return;
        buf = buf.subarray(24);
        preface = true;
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const f: RawFrame = {
          type: buf[3]!,
          flags: buf[4]!,
          stream: buf.readUInt32BE(5) & 0x7fffffff,
          payload: Buffer.from(buf.subarray(9, 9 + len)),
        };
        buf = buf.subarray(9 + len);
        if (f.type === T.HEADERS) {
          try {
            f.fields = dec.decode(f.payload).map((x) => [x.name, x.value]);
          } catch (err) {
            f.decodeError = (err as Error).message;
          }
        }
        if (f.type === T.SETTINGS && (f.flags & 1) === 0) c.send(frame(T.SETTINGS, 1, 0));
        c.frames.push(f);
        onFrame(c, f);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    conns,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
