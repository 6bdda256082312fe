// Helpers for the mirror review tests: a node:http2 shadow, a recording HTTP/1.1 shadow, the mirrored config.
import type http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import { connect as netConnect } from 'node:net';
import { gatewayConfig, httpUpstream, upstreamOf } from '../support.ts';

export interface H2Shadow {
  port: number;
  address: string;
  /** Streams seen, by :path, in arrival order. */
  paths: string[];
  sessions: number;
  close(): Promise<void>;
}

/** A node:http2 (h2c) upstream: `onStream` answers each stream. */
export async function h2Shadow(
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
): Promise<H2Shadow> {
  const server = http2.createServer();
  const sockets = new Set<net.Socket>();
  const up: H2Shadow = {
    port: 0,
    address: '',
    paths: [],
    sessions: 0,
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
    up.paths.push(String(headers[':path']));
    stream.on('error', () => {});
    onStream(stream, headers);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.port = (server.address() as net.AddressInfo).port;
  up.address = `127.0.0.1:${up.port}`;
  return up;
}

/** What a recording shadow saw of one request. */
export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  bodyLength: number;
  /** The body arrived whole (the request's end was seen). */
  complete: boolean;
}

/** A node:http shadow recording what it receives; `answer` may answer itself (return true) or hang. */
export async function recordingShadow(
  answer?: (req: http.IncomingMessage, res: http.ServerResponse, seen: Seen) => boolean | undefined,
) {
  const seen: Seen[] = [];
  const up = await httpUpstream((req, res) => {
    const entry: Seen = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      bodyLength: 0,
      complete: false,
    };
    seen.push(entry);
    req.on('data', (d: Buffer) => {
      entry.bodyLength += d.length;
    });
    req.on('end', () => {
      entry.complete = true;
    });
    if (answer?.(req, res, entry) === true) return;
    req.on('end', () => {
      if (answer !== undefined) return; // an answer function that did not answer: hangs
      res.writeHead(200, { 'content-length': '6' });
      res.end('shadow');
    });
  });
  return Object.assign(up, { seen });
}

/** A gateway config: route `app` on `/` to `main`, mirrored to `shadow`. */
export function mirrored(
  main: string,
  shadow: string,
  mirror: Record<string, unknown> = {},
  route: Record<string, unknown> = {},
  shadowExtra: Record<string, unknown> = {},
  mainExtra: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) {
  return gatewayConfig(
    { main: upstreamOf([main], mainExtra), shadow: upstreamOf([shadow], shadowExtra) },
    [
      {
        name: 'app',
        match: { path: '/' },
        upstream: 'main',
        mirror: { upstream: 'shadow', ...mirror },
        ...route,
      },
    ],
    extra,
  );
}

/** HPACK: a literal field without indexing, new name, no Huffman (RFC 7541 §6.2.2); short strings only. */
function literal(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  if (n.length > 126 || v.length > 126) throw new Error('literal(): short strings only');
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
}

function h2frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  payload.copy(b, 9);
  return b;
}

/**
 * One HTTP/2 request over h2c prior knowledge, frame by frame (so a field node:http2 would refuse can be
 * sent): `head` fields (pseudo-fields included), `body` in one DATA frame, then `trailers` ending the stream.
 * Resolves once the gateway's response HEADERS for the stream arrived (true), or after `ms` (false).
 */
export function h2RawRequest(
  port: number,
  head: [string, string][],
  body: Buffer,
  trailers: [string, string][],
  ms = 3000,
): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), ms);
    s.on('error', () => finish(false));
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const length = buf.readUIntBE(0, 3);
        if (buf.length < 9 + length) return;
        const type = buf[3]!;
        const flags = buf[4]!;
        const stream = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + length);
        if (type === 4 && (flags & 1) === 0) s.write(h2frame(4, 1, 0)); // SETTINGS: ACK
        if (type === 1 && stream === 1) finish(true);
      }
    });
    s.on('connect', () => {
      s.write(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'));
      s.write(h2frame(4, 0, 0));
      s.write(h2frame(1, 0x4, 1, Buffer.concat(head.map(([n, v]) => literal(n, v)))));
      if (body.length > 0) s.write(h2frame(0, 0, 1, body));
      s.write(h2frame(1, 0x5, 1, Buffer.concat(trailers.map(([n, v]) => literal(n, v)))));
    });
  });
}
