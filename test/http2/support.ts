// A frame-level HTTP/2 client for tests: it sends exactly the bytes a test names (good or hostile) over a
// real socket and reads the server's frames back, decoding header blocks with an HPACK decoder of its own.
import net from 'node:net';
import { type EngineOptions, serve } from 'netloom';
import type { RequestHandler } from 'netloom/http1';
import { HpackDecoder, HpackEncoder, type ServerOptions, server } from 'netloom/http2';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const T = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;
export const F = { END_STREAM: 1, ACK: 1, END_HEADERS: 4, PADDED: 8, PRIORITY: 0x20 } as const;
export const E = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  SETTINGS_TIMEOUT: 4,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  ENHANCE_YOUR_CALM: 11,
} as const;

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
  /** Decoded fields of a HEADERS block (END_HEADERS frames only). */
  fields?: [string, string][];
}

export function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Buffer | string = Buffer.alloc(0),
) {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const b = Buffer.alloc(9 + p.length);
  b.writeUIntBE(p.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  p.copy(b, 9);
  return b;
}

export function settings(pairs: [number, number][] = []): Buffer {
  const p = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(T.SETTINGS, 0, 0, p);
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** A client connection speaking raw frames. */
export class H2Client {
  readonly socket: net.Socket;
  readonly encoder = new HpackEncoder({ sensitive: [] });
  readonly decoder = new HpackDecoder({ maxHeaderListSize: 1 << 24 });
  readonly frames: Frame[] = [];
  closed = false;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 9) {
        const len = this.buf.readUIntBE(0, 3);
        if (this.buf.length < 9 + len) break;
        const f: Frame = {
          type: this.buf[3]!,
          flags: this.buf[4]!,
          stream: this.buf.readUInt32BE(5) & 0x7fffffff,
          payload: Buffer.from(this.buf.subarray(9, 9 + len)),
        };
        if (f.type === T.HEADERS && (f.flags & F.END_HEADERS) !== 0) {
          f.fields = this.decoder.decode(f.payload).map((x) => [x.name, x.value]);
        }
        this.frames.push(f);
        this.buf = this.buf.subarray(9 + len);
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Connects and, unless `handshake` is false, sends the preface and an empty SETTINGS. */
  static async connect(port: number, handshake = true, initial: [number, number][] = []): Promise<H2Client> {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new H2Client(socket);
    if (handshake) {
      c.send(Buffer.concat([PREFACE, settings(initial)]));
      await c.until((f) => f.type === T.SETTINGS && (f.flags & F.ACK) !== 0, 'SETTINGS ack');
    }
    return c;
  }

  send(...bufs: Buffer[]): void {
    if (!this.socket.destroyed) this.socket.write(Buffer.concat(bufs));
  }

  /** A header block for `fields` (pseudo-headers given first by the caller). */
  block(fields: [string, string][]): Buffer {
    return Buffer.from(this.encoder.encode(fields));
  }

  /** HEADERS with END_HEADERS (and END_STREAM unless `end` is false). */
  headers(stream: number, fields: [string, string][], end = true, extraFlags = 0): Buffer {
    return frame(
      T.HEADERS,
      F.END_HEADERS | (end ? F.END_STREAM : 0) | extraFlags,
      stream,
      this.block(fields),
    );
  }

  /** A GET request's fields. */
  static get(path = '/', extra: [string, string][] = []): [string, string][] {
    return [[':method', 'GET'], [':scheme', 'http'], [':authority', 'localhost'], [':path', path], ...extra];
  }

  /** Waits for a frame (seen or future) matching `match`; rejects on close or timeout. */
  async until(match: (f: Frame) => boolean, what = 'frame', ms = 5000): Promise<Frame> {
    const deadline = Date.now() + ms;
    let seen = 0;
    for (;;) {
      for (; seen < this.frames.length; seen++) if (match(this.frames[seen]!)) return this.frames[seen]!;
      if (this.closed) throw new Error(`connection closed before ${what}; got ${this.describe()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.describe()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The GOAWAY the server sends: its error code (and the connection then closes). */
  async goaway(ms = 5000): Promise<{ code: number; last: number; debug: string }> {
    const f = await this.until((x) => x.type === T.GOAWAY, 'GOAWAY', ms);
    return {
      last: f.payload.readUInt32BE(0) & 0x7fffffff,
      code: f.payload.readUInt32BE(4),
      debug: f.payload.subarray(8).toString(),
    };
  }

  async rst(stream: number, ms = 5000): Promise<number> {
    const f = await this.until(
      (x) => x.type === T.RST_STREAM && x.stream === stream,
      `RST_STREAM on ${stream}`,
      ms,
    );
    return f.payload.readUInt32BE(0);
  }

  /** The response on `stream`: status, fields, body, trailers (waits for END_STREAM). */
  async response(stream: number, ms = 5000) {
    await this.until(
      (f) => f.stream === stream && (f.flags & F.END_STREAM) !== 0 && f.type <= 1,
      `end of stream ${stream}`,
      ms,
    );
    const mine = this.frames.filter((f) => f.stream === stream);
    const heads = mine.filter((f) => f.type === T.HEADERS);
    const fields = heads[0]?.fields ?? [];
    const body = Buffer.concat(mine.filter((f) => f.type === T.DATA).map((f) => f.payload));
    return {
      status: Number(fields.find(([n]) => n === ':status')?.[1]),
      fields,
      body: body.toString(),
      trailers: heads.length > 1 ? heads[heads.length - 1]!.fields! : [],
    };
  }

  async closedWithin(ms = 5000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.closed;
  }

  describe(): string {
    const shown = this.frames.slice(-40);
    return `${this.frames.length > 40 ? '... ' : ''}${shown
      .map(
        (f) =>
          `${Object.keys(T).find((k) => T[k as keyof typeof T] === f.type) ?? f.type}/${f.stream}/${f.flags}`,
      )
      .join(' ')}`;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Serves `handler` over HTTP/1.1 and HTTP/2 on one loop. */
export async function startH2(
  handler: RequestHandler,
  options: ServerOptions = {},
  engine: EngineOptions = {},
) {
  const e = await serve(server(handler, options), { loops: 1, ...engine });
  return { engine: e, port: e.port };
}
