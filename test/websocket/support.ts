// A raw WebSocket client for tests: the upgrade request as bytes, masked frames built by hand, and the
// server's frames parsed back (RSV bits kept), so a test sends exactly what a hostile client would.
import net from 'node:net';

export const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

export interface Frame {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  payload: Buffer;
}

/** A client frame (masked unless told otherwise). */
export function frame(
  fin: boolean,
  opcode: number,
  payload: Buffer | string,
  opts: { mask?: boolean; rsv?: number } = {},
): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const mask = opts.mask ?? true;
  const head: number[] = [(fin ? 0x80 : 0) | (opts.rsv ?? 0) | opcode];
  const m = mask ? 0x80 : 0;
  if (p.length < 126) head.push(m | p.length);
  else if (p.length < 65536) head.push(m | 126, p.length >> 8, p.length & 0xff);
  else
    head.push(
      m | 127,
      0,
      0,
      0,
      0,
      (p.length >>> 24) & 0xff,
      (p.length >>> 16) & 0xff,
      (p.length >>> 8) & 0xff,
      p.length & 0xff,
    );
  if (!mask) return Buffer.concat([Buffer.from(head), p]);
  const key = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.from(p);
  for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return Buffer.concat([Buffer.from(head), key, body]);
}

export interface RawSession {
  socket: net.Socket;
  head: string;
  frames(): Frame[];
  closed: Promise<void>;
  isClosed(): boolean;
  send(...b: Buffer[]): void;
}

/** Opens a WebSocket on `port` with the raw upgrade request (extra header lines may be added). */
export async function rawSession(port: number, extraHeaders = '', path = '/ws'): Promise<RawSession> {
  const socket = net.connect(port, '127.0.0.1');
  let data = Buffer.alloc(0);
  let ended = false;
  let end!: () => void;
  const closed = new Promise<void>((r) => (end = r));
  socket.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
  socket.on('close', () => {
    ended = true;
    end();
  });
  socket.on('error', () => {});
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`,
  );
  for (let i = 0; i < 400 && data.indexOf('\r\n\r\n') === -1; i++) await new Promise((r) => setTimeout(r, 5));
  const headEnd = data.indexOf('\r\n\r\n');
  return {
    socket,
    head: data.subarray(0, headEnd).toString(),
    closed,
    isClosed: () => ended,
    send: (...b) => socket.write(Buffer.concat(b)),
    frames() {
      const out: Frame[] = [];
      let p = headEnd + 4;
      while (p + 2 <= data.length) {
        const b0 = data[p]!;
        let len = data[p + 1]! & 0x7f;
        let q = p + 2;
        if (len === 126) {
          len = data.readUInt16BE(q);
          q += 2;
        } else if (len === 127) {
          len = Number(data.readBigUInt64BE(q));
          q += 8;
        }
        if (q + len > data.length) break;
        out.push({
          fin: (b0 & 0x80) !== 0,
          rsv1: (b0 & 0x40) !== 0,
          opcode: b0 & 0x0f,
          payload: data.subarray(q, q + len),
        });
        p = q + len;
      }
      return out;
    },
  };
}

export async function within(p: Promise<unknown>, ms: number): Promise<void> {
  await Promise.race([p, new Promise((r) => setTimeout(r, ms))]);
}
