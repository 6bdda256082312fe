// Helpers for the review tests (copied from ../websocket.test.ts, plus a raw upstream that speaks WebSocket).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { gatewayConfig, startTestGateway, upstreamOf, waitUntil } from '../support.ts';

export { frame, stopServer } from '../websocket-support.ts';

import { frame, stopServer } from '../websocket-support.ts';

export const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const acceptOf = (key: string) =>
  createHash('sha1')
    .update(key + GUID)
    .digest('base64');

export async function wsUpstream(options: { name?: string } = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const state = {
    wss,
    address: `127.0.0.1:${(wss.address() as net.AddressInfo).port}`,
    sockets: [] as WebSocket[],
    headers: [] as Record<string, string | string[] | undefined>[],
    messages: [] as string[],
    closes: [] as { code: number; reason: string }[],
    close: () => stopServer(wss),
  };
  wss.on('connection', (ws, req) => {
    state.sockets.push(ws);
    state.headers.push(req.headers);
    ws.on('message', (data, binary) => {
      state.messages.push(data.toString());
      const text = binary ? null : data.toString();
      if (text === 'who') ws.send(options.name ?? 'upstream');
      else ws.send(data, { binary });
    });
    ws.on('close', (code, reason) => state.closes.push({ code, reason: reason.toString() }));
    ws.on('error', () => {});
  });
  return state;
}

export function openWs(url: string, headers?: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, [], { headers, perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) =>
      reject(Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode })),
    );
    ws.once('error', reject);
  });
}

export function nextMessage(ws: WebSocket): Promise<Buffer> {
  return new Promise((resolve) => ws.once('message', (data: Buffer) => resolve(data)));
}

export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve({ code: -1, reason: 'already closed' });
  return new Promise((resolve) =>
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })),
  );
}

export async function gatewayFor(
  addresses: string | string[],
  route: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
  upstreamExtra: Record<string, unknown> = {},
) {
  const list = typeof addresses === 'string' ? [addresses] : addresses;
  return startTestGateway(
    gatewayConfig(
      { up: upstreamOf(list, upstreamExtra) },
      [{ name: 'ws', match: { path: '/' }, upstream: 'up', ...route }],
      extra,
    ),
  );
}

/** A raw socket connected to `port`, collecting everything it receives. */
export async function rawSocket(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  let length = 0;
  socket.on('data', (d: Buffer) => {
    chunks.push(d);
    length += d.length;
  });
  let joined = Buffer.alloc(0);
  const all = () => {
    if (joined.length !== length) joined = Buffer.concat(chunks, length);
    return joined;
  };
  let ended = false;
  socket.on('close', () => (ended = true));
  return { socket, all, ended: () => ended };
}

export function upgradeRequest(key: string, path = '/', extraHeaders = ''): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`
  );
}

/** A raw client past its 101. */
export async function rawClient(port: number, path = '/', extraHeaders = '', after?: Buffer) {
  const r = await rawSocket(port);
  const key = randomBytes(16).toString('base64');
  const req = Buffer.from(upgradeRequest(key, path, extraHeaders), 'latin1');
  r.socket.write(after === undefined ? req : Buffer.concat([req, after]));
  await waitUntil(() => r.all().includes('\r\n\r\n'), 5000, '101');
  const data = r.all();
  const end = data.indexOf('\r\n\r\n') + 4;
  const head = data.subarray(0, end).toString('latin1');
  assert.match(head, /^HTTP\/1\.1 101 /, head);
  return { ...r, head, received: () => r.all().subarray(end) };
}

export interface ParsedFrame {
  fin: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Parses frames (unmasking); `rest` is the bytes of an incomplete trailing frame. */
export function parseFrames(bytes: Buffer): { frames: ParsedFrame[]; rest: number } {
  const frames: ParsedFrame[] = [];
  let p = 0;
  while (p + 2 <= bytes.length) {
    const b0 = bytes[p]!;
    const b1 = bytes[p + 1]!;
    let len = b1 & 0x7f;
    let h = 2;
    if (len === 126) {
      if (p + 4 > bytes.length) break;
      len = bytes.readUInt16BE(p + 2);
      h = 4;
    } else if (len === 127) {
      if (p + 10 > bytes.length) break;
      len = Number(bytes.readBigUInt64BE(p + 2));
      h = 10;
    }
    const masked = (b1 & 0x80) !== 0;
    const keyAt = p + h;
    if (masked) h += 4;
    if (p + h + len > bytes.length) break;
    const payload = Buffer.from(bytes.subarray(p + h, p + h + len));
    if (masked) for (let i = 0; i < len; i++) payload[i]! ^= bytes[keyAt + (i & 3)]!;
    frames.push({ fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, masked, payload });
    p += h + len;
  }
  return { frames, rest: bytes.length - p };
}

/** A raw TCP upstream: `onConn` gets each socket and the bytes it receives. */
export async function rawWsUpstream(onConn: (socket: net.Socket, state: RawConn) => void) {
  const sockets = new Set<net.Socket>();
  const conns: RawConn[] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    const state: RawConn = { socket, data: Buffer.alloc(0), head: null, key: '', ended: false };
    conns.push(state);
    socket.on('close', () => {
      sockets.delete(socket);
      state.ended = true;
    });
    socket.on('data', (d: Buffer) => {
      state.data = Buffer.concat([state.data, d]);
      if (state.head === null) {
        const end = state.data.indexOf('\r\n\r\n');
        if (end === -1) return;
        state.head = state.data.subarray(0, end).toString('latin1');
        state.key = /\r\nsec-websocket-key:\s*(\S+)/i.exec(state.head)?.[1] ?? '';
        state.data = state.data.subarray(end + 4);
        onConn(socket, state);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    conns,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface RawConn {
  socket: net.Socket;
  data: Buffer;
  head: string | null;
  key: string;
  ended: boolean;
}

export function switching(key: string, extra = ''): string {
  return (
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${acceptOf(key)}\r\n${extra}\r\n`
  );
}

/** An unmasked server frame. */
export const serverFrame = (opcode: number, payload: Buffer, fin = true) =>
  frame(opcode, payload, { fin, mask: false });

/** The latest stats of target `i` of upstream `up`, waited for until `check` holds. */
export async function waitStats(
  gw: { gateway: { snapshots(): unknown[] } },
  check: (s: { websockets: number; target: { active: number; pool: { open: number } } }) => boolean,
  what: string,
  i = 0,
  ms = 4000,
) {
  let last: unknown = null;
  try {
    await waitUntil(
      () => {
        const snap = gw.gateway.snapshots()[0] as
          | { websockets: number; upstreams: Record<string, { active: number; pool: { open: number } }[]> }
          | undefined;
        if (snap === undefined) return false;
        const s = { websockets: snap.websockets, target: snap.upstreams.up![i]! };
        last = s;
        return check(s);
      },
      ms,
      what,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last stats ${JSON.stringify(last)}`);
  }
}
