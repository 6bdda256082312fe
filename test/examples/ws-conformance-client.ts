// A raw WebSocket client for the Autobahn-style conformance run (ws-conformance.test.ts): the opening
// handshake by hand (101, Sec-WebSocket-Accept, an RFC 7692 check of the extension answer), client frames
// built byte by byte (masked unless told otherwise), the server's frames parsed back with every bit kept,
// and the expectations a case states: a frame, a message (inflated when compressed), a close with its
// code followed by the server closing TCP, or silence.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import zlib from 'node:zlib';

export const OP = { CONTINUATION: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa } as const;
/** RSV1: a compressed message (RFC 7692 §6). */
export const RSV1 = 0x40;

/** Milliseconds a case waits for what it expects before it fails. */
export const WAIT = 2_000;

export interface Frame {
  fin: boolean;
  /** The three reserved bits as they stand in the first octet (0x40 RSV1, 0x20 RSV2, 0x10 RSV3). */
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

export interface FrameOptions {
  fin?: boolean;
  /** Reserved bits, as in the first octet (0x10-0x70). */
  rsv?: number;
  /** Client frames are masked (RFC 6455 §5.3); false sends one unmasked. */
  mask?: boolean;
}

/** One frame's bytes, exactly: FIN, RSV, opcode, the shortest length form, a fresh mask key. */
export function frame(opcode: number, payload: Buffer | string = '', opts: FrameOptions = {}): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const mask = opts.mask ?? true;
  const n = data.length;
  const head = n < 126 ? 2 : n < 65_536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + (mask ? 4 : 0) + n);
  out[0] = ((opts.fin ?? true) ? 0x80 : 0) | ((opts.rsv ?? 0) & 0x70) | (opcode & 0x0f);
  const m = mask ? 0x80 : 0;
  if (n < 126) out[1] = m | n;
  else if (n < 65_536) {
    out[1] = m | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = m | 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  if (!mask) {
    data.copy(out, head);
    return out;
  }
  const key = randomBytes(4);
  key.copy(out, head);
  const body = head + 4;
  for (let i = 0; i < n; i++) out[body + i] = data[i]! ^ key[i & 3]!;
  return out;
}

/** A close frame's payload: the code (two octets) and the reason. */
export function closePayload(code: number, reason: Buffer | string = ''): Buffer {
  const r = typeof reason === 'string' ? Buffer.from(reason) : reason;
  const out = Buffer.alloc(2 + r.length);
  out.writeUInt16BE(code, 0);
  r.copy(out, 2);
  return out;
}

/** `parts` as the frames of one message: the first with `opcode` (and `rsv`), the others continuations. */
export function fragments(opcode: number, parts: readonly Buffer[], rsv = 0): Buffer[] {
  return parts.map((p, i) =>
    frame(i === 0 ? opcode : OP.CONTINUATION, p, { fin: i === parts.length - 1, rsv: i === 0 ? rsv : 0 }),
  );
}

/** `data` cut every `size` octets (one empty part for empty data). */
export function chop(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out.length === 0 ? [Buffer.alloc(0)] : out;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---- permessage-deflate (RFC 7692) ----------------------------------------------------------------

const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/**
 * A message compressed on its own (§7.2.1): raw deflate ended by a sync flush, its 00 00 ff ff removed.
 * An 8-bit window is none zlib's deflate has: Huffman codes only (no back-references) fit any window.
 */
export function deflate(data: Buffer, windowBits = 15): Buffer {
  const out = zlib.deflateRawSync(data, {
    windowBits: Math.max(windowBits, 9),
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
    ...(windowBits < 9 ? { strategy: zlib.constants.Z_HUFFMAN_ONLY } : {}),
  });
  assert.deepEqual([...out.subarray(-4)], [...TAIL], 'a sync flush ends in 00 00 ff ff');
  return out.subarray(0, out.length - 4);
}

/** The parameters both sides agreed on (the answer's values, RFC 7692 §7.1). */
export interface DeflateAgreement {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  serverMaxWindowBits: number;
  clientMaxWindowBits: number;
}

type Params = Map<string, string | true>;

/** An extension header as elements: a name and its parameters, in order; `dup` when a name repeats. */
function parseExtensions(header: string): { name: string; params: Params; dup: boolean }[] {
  return header
    .split(',')
    .map((element) => element.split(';').map((p) => p.trim()))
    .filter((parts) => parts[0] !== '')
    .map(([name, ...rest]) => {
      const params: Params = new Map();
      let dup = false;
      for (const p of rest) {
        const eq = p.indexOf('=');
        const key = (eq === -1 ? p : p.slice(0, eq)).trim().toLowerCase();
        let value: string | true = eq === -1 ? true : p.slice(eq + 1).trim();
        if (typeof value === 'string' && value.length >= 2 && value.startsWith('"') && value.endsWith('"'))
          value = value.slice(1, -1);
        if (params.has(key)) dup = true;
        params.set(key, value);
      }
      return { name: (name ?? '').toLowerCase(), params, dup };
    });
}

const BITS = /^(8|9|1[0-5])$/;
const PMD_PARAMS = new Set([
  'server_no_context_takeover',
  'client_no_context_takeover',
  'server_max_window_bits',
  'client_max_window_bits',
]);

/** Whether an offer is one a server may accept (RFC 7692 §5: else it MUST decline it). */
function validOffer(offer: { params: Params; dup: boolean }): boolean {
  if (offer.dup) return false;
  for (const [key, value] of offer.params) {
    if (!PMD_PARAMS.has(key)) return false;
    if (key.endsWith('_no_context_takeover') && value !== true) return false;
    if (key === 'server_max_window_bits' && (value === true || !BITS.test(value))) return false;
    if (key === 'client_max_window_bits' && value !== true && !BITS.test(value)) return false;
  }
  return true;
}

/**
 * Checks the server's `Sec-WebSocket-Extensions` against the client's `offer` (RFC 7692 §5, §7.1): at most
 * one permessage-deflate element and nothing that was not offered, known parameters once each with valid
 * values, and an answer to one valid offer (client_max_window_bits only if offered and not above its value;
 * server_max_window_bits not above the offered one, present when one was offered; server_no_context_takeover
 * when offered). Returns what was agreed, or null when the server declined.
 */
export function checkDeflateAnswer(
  offer: string | undefined,
  answer: string | undefined,
): DeflateAgreement | null {
  if (answer === undefined) return null;
  assert.ok(offer !== undefined, `Sec-WebSocket-Extensions "${answer}" answers no offer`);
  const elements = parseExtensions(answer);
  assert.equal(elements.length, 1, `one extension in the answer "${answer}"`);
  const [r] = elements as [{ name: string; params: Params; dup: boolean }];
  assert.equal(
    r.name,
    'permessage-deflate',
    `the answer "${answer}" names permessage-deflate, the one extension offered`,
  );
  assert.ok(!r.dup, `a parameter twice in the answer "${answer}"`);
  for (const [key, value] of r.params) {
    assert.ok(PMD_PARAMS.has(key), `unknown parameter ${key} in the answer "${answer}"`);
    if (key.endsWith('_no_context_takeover')) assert.equal(value, true, `${key} takes no value`);
    else
      assert.ok(value !== true && BITS.test(value), `${key} needs a value 8-15 in an answer, got ${value}`);
  }
  const num = (p: Params, key: string) => {
    const v = p.get(key);
    return typeof v === 'string' ? Number(v) : undefined;
  };
  const answers = (o: { params: Params }) => {
    const client = num(r.params, 'client_max_window_bits');
    if (client !== undefined) {
      if (!o.params.has('client_max_window_bits')) return false;
      const offered = num(o.params, 'client_max_window_bits');
      if (offered !== undefined && client > offered) return false;
    }
    const offeredServer = num(o.params, 'server_max_window_bits');
    const server = num(r.params, 'server_max_window_bits');
    if (offeredServer !== undefined && (server === undefined || server > offeredServer)) return false;
    if (o.params.has('server_no_context_takeover') && !r.params.has('server_no_context_takeover'))
      return false;
    return true;
  };
  const offers = parseExtensions(offer).filter((o) => o.name === 'permessage-deflate' && validOffer(o));
  assert.ok(offers.some(answers), `"${answer}" is no valid answer to any acceptable offer in "${offer}"`);
  return {
    serverNoContextTakeover: r.params.has('server_no_context_takeover'),
    clientNoContextTakeover: r.params.has('client_no_context_takeover'),
    serverMaxWindowBits: num(r.params, 'server_max_window_bits') ?? 15,
    clientMaxWindowBits: num(r.params, 'client_max_window_bits') ?? 15,
  };
}

// ---- the client --------------------------------------------------------------------------------------

/** Inbound bytes as a list of chunks: a 16 MiB frame is joined once, when it is all in. */
class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  /** The first `n` octets (n <= length), without consuming them. */
  peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first.subarray(0, n);
    const all = Buffer.concat(this.chunks);
    this.chunks = [all];
    return all.subarray(0, n);
  }

  take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.length -= n;
    return out;
  }
}

export interface Message {
  opcode: number;
  payload: Buffer;
  compressed: boolean;
}

function describe(f: Frame): string {
  const name = { 0: 'continuation', 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' }[f.opcode];
  let what = `${name ?? `opcode ${f.opcode}`} frame (fin ${f.fin}, rsv 0x${f.rsv.toString(16)}, ${f.payload.length} octets`;
  if (f.opcode === OP.CLOSE && f.payload.length >= 2)
    what += `, code ${f.payload.readUInt16BE(0)} "${f.payload.toString('utf8', 2)}"`;
  else if (f.payload.length <= 40) what += `, ${JSON.stringify(f.payload.toString('latin1'))}`;
  return `${what})`;
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export class WsClient {
  readonly socket: net.Socket;
  /** The 101 response's header fields (names lower-cased). */
  headers = new Map<string, string>();
  /** What permessage-deflate agreed, or null. */
  deflate: DeflateAgreement | null = null;
  private readonly queue = new ByteQueue();
  private readonly frames: Frame[] = [];
  private readonly listeners = new Set<() => void>();
  private handshaking = true;
  /** The server ended TCP (FIN, or a reset). */
  private ended = false;
  private reset = false;
  /** Compressed messages received so far, for a server that keeps its context (no server_no_context_takeover). */
  private history: Buffer[] = [];
  private historyLength = 0;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.queue.push(d);
      if (!this.handshaking) this.parse();
      this.notify();
    });
    const end = () => {
      this.ended = true;
      this.notify();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') this.reset = true;
      end();
    });
  }

  /** Opens a WebSocket to ws://127.0.0.1:`port`/, offering `extensions` if given, and checks the 101. */
  static async connect(port: number, extensions?: string): Promise<WsClient> {
    const c = new WsClient(net.connect(port, '127.0.0.1'));
    try {
      await c.handshake(port, extensions);
    } catch (err) {
      c.destroy();
      throw err;
    }
    return c;
  }

  private async handshake(port: number, extensions: string | undefined): Promise<void> {
    const key = randomBytes(16).toString('base64');
    this.socket.write(
      `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        (extensions === undefined ? '' : `Sec-WebSocket-Extensions: ${extensions}\r\n`) +
        '\r\n',
    );
    const headEnd = await this.waitFor(
      () => {
        const at = this.queue.length === 0 ? -1 : this.queue.peek(this.queue.length).indexOf('\r\n\r\n');
        if (at !== -1) return at;
        if (this.ended) throw new Error('the server closed the connection during the handshake');
        return undefined;
      },
      WAIT,
      'the handshake response',
    );
    const [status = '', ...lines] = this.queue
      .take(headEnd + 4)
      .toString('latin1')
      .trimEnd()
      .split('\r\n');
    assert.match(status, /^HTTP\/1\.1 101 /, `handshake answered "${status}"`);
    for (const line of lines) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const before = this.headers.get(name);
      this.headers.set(name, before === undefined ? value : `${before}, ${value}`);
    }
    assert.equal(this.headers.get('upgrade')?.toLowerCase(), 'websocket', 'Upgrade: websocket');
    assert.ok(/(^|[\s,])upgrade($|[\s,])/i.test(this.headers.get('connection') ?? ''), 'Connection: Upgrade');
    const accept = createHash('sha1')
      .update(key + GUID)
      .digest('base64');
    assert.equal(this.headers.get('sec-websocket-accept'), accept, 'Sec-WebSocket-Accept');
    this.deflate = checkDeflateAnswer(extensions, this.headers.get('sec-websocket-extensions'));
    this.handshaking = false;
    this.parse();
  }

  // ---- out ------------------------------------------------------------------------------------------

  /** Writes `chunks` in one TCP write (nothing once the connection is gone). */
  send(...chunks: Buffer[]): void {
    if (this.socket.writable) this.socket.write(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
  }

  /** Writes `bytes` in writes of `size` octets, each handed to the kernel (and `pauseMs` waited) before the next. */
  async sendChopped(bytes: Buffer, size: number, pauseMs = 1): Promise<void> {
    for (const part of chop(bytes, size)) {
      if (!this.socket.writable || this.ended) return;
      await new Promise<void>((resolve) => this.socket.write(part, () => resolve()));
      if (pauseMs > 0) await sleep(pauseMs);
    }
  }

  /** Frames sent one write each, `pauseMs` apart (Autobahn's "one by one with delay"). */
  async sendSlowly(frames: readonly Buffer[], pauseMs = 10): Promise<void> {
    for (const f of frames) {
      this.send(f);
      await sleep(pauseMs);
    }
  }

  /** A message's frames: compressed (RSV1 on the first frame) when deflate was agreed, unless told not to. */
  messageFrames(
    opcode: number,
    payload: Buffer | string,
    opts: { compress?: boolean; fragment?: number } = {},
  ) {
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
    const compress = opts.compress ?? this.deflate !== null;
    const body = compress ? deflate(data, this.deflate?.clientMaxWindowBits) : data;
    return fragments(
      opcode,
      opts.fragment === undefined ? [body] : chop(body, opts.fragment),
      compress ? RSV1 : 0,
    );
  }

  /** Sends a close frame (code and reason, or none). */
  sendClose(code?: number, reason: Buffer | string = ''): void {
    this.send(frame(OP.CLOSE, code === undefined ? '' : closePayload(code, reason)));
  }

  // ---- in -------------------------------------------------------------------------------------------

  private parse(): void {
    const q = this.queue;
    for (;;) {
      if (q.length < 2) return;
      const h = q.peek(2);
      const len7 = h[1]! & 0x7f;
      const masked = (h[1]! & 0x80) !== 0;
      let head = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0);
      if (q.length < head) return;
      const hb = q.peek(head);
      const n = len7 === 126 ? hb.readUInt16BE(2) : len7 === 127 ? Number(hb.readBigUInt64BE(2)) : len7;
      const key = masked ? head : -1;
      if (masked) head += 4;
      if (q.length < head + n) return;
      const bytes = q.take(head + n);
      const payload = bytes.subarray(head);
      if (masked) for (let i = 0; i < n; i++) payload[i]! ^= bytes[key + (i & 3)]!;
      this.frames.push({
        fin: (h[0]! & 0x80) !== 0,
        rsv: h[0]! & 0x70,
        opcode: h[0]! & 0x0f,
        masked,
        payload,
      });
    }
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Resolves with `check()`'s first defined value, re-checked on every event; fails after `ms`. */
  private waitFor<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(attempt);
      };
      const attempt = () => {
        try {
          const v = check();
          if (v === undefined) return;
          done();
          resolve(v);
        } catch (err) {
          done();
          reject(err);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`nothing after ${ms} ms: expected ${what}`));
      }, ms);
      this.listeners.add(attempt);
      attempt();
    });
  }

  /** The server's next frame (which must be unmasked, RFC 6455 §5.1). */
  async readFrame(ms = WAIT, what = 'a frame'): Promise<Frame> {
    const f = await this.waitFor(
      () => {
        const next = this.frames.shift();
        if (next !== undefined) return next;
        if (this.ended) throw new Error(`the server closed TCP without sending ${what}`);
        return undefined;
      },
      ms,
      what,
    );
    assert.ok(!f.masked, `a masked frame from the server: ${describe(f)}`);
    return f;
  }

  /** The next frame is `opcode` with exactly `payload` (a pong for a ping, say). */
  async expectFrame(opcode: number, payload: Buffer | string = '', ms = WAIT): Promise<void> {
    const want = typeof payload === 'string' ? Buffer.from(payload) : payload;
    const f = await this.readFrame(ms, `opcode ${opcode}`);
    assert.ok(
      f.opcode === opcode && f.fin && f.rsv === 0 && f.payload.equals(want),
      `expected opcode ${opcode} with ${want.length} octets ${JSON.stringify(want.toString('latin1').slice(0, 40))}, got ${describe(f)}`,
    );
  }

  /** The next message (its frames joined, inflated when RSV1 marks it compressed); no control frame between. */
  async readMessage(ms = WAIT): Promise<Message> {
    const first = await this.readFrame(ms, 'a message');
    assert.ok(
      first.opcode === OP.TEXT || first.opcode === OP.BINARY,
      `expected a message, got ${describe(first)}`,
    );
    const compressed = (first.rsv & RSV1) !== 0;
    assert.ok(
      (first.rsv & ~RSV1) === 0 && (!compressed || this.deflate !== null),
      `reserved bits set without an extension that defines them: ${describe(first)}`,
    );
    const parts = [first.payload];
    for (let f = first; !f.fin; ) {
      f = await this.readFrame(ms, 'the next fragment');
      assert.ok(f.opcode === OP.CONTINUATION && f.rsv === 0, `expected a continuation, got ${describe(f)}`);
      parts.push(f.payload);
    }
    const body = Buffer.concat(parts);
    return { opcode: first.opcode, payload: compressed ? this.inflate(body) : body, compressed };
  }

  /** The next message is `opcode` with exactly `payload`. */
  async expectMessage(opcode: number, payload: Buffer | string, ms = WAIT): Promise<Message> {
    const want = typeof payload === 'string' ? Buffer.from(payload) : payload;
    const m = await this.readMessage(ms);
    assert.equal(m.opcode, opcode, `the echo's opcode`);
    assert.ok(
      m.payload.equals(want),
      `the echo differs: ${m.payload.length} octets ${JSON.stringify(m.payload.toString('latin1').slice(0, 40))}, expected ${want.length} ${JSON.stringify(want.toString('latin1').slice(0, 40))}`,
    );
    return m;
  }

  private inflate(data: Buffer): Buffer {
    const windowBits = this.deflate?.serverMaxWindowBits ?? 15;
    const opts = { windowBits: Math.max(windowBits, 8), finishFlush: zlib.constants.Z_SYNC_FLUSH };
    if (this.deflate?.serverNoContextTakeover !== false)
      return zlib.inflateRawSync(Buffer.concat([data, TAIL]), opts);
    // The server keeps its window: this message inflates after all the compressed ones before it.
    this.history.push(data, TAIL);
    const all = zlib.inflateRawSync(Buffer.concat(this.history), opts);
    const out = all.subarray(this.historyLength);
    this.historyLength = all.length;
    return out;
  }

  /**
   * The next frame is a close with `code` (null: no status code or 1000), with a UTF-8 reason, and then the
   * server closes TCP (FIN, not a reset) with nothing after the close frame.
   */
  async expectClose(code: number | null, ms = WAIT): Promise<void> {
    const what = code === null ? 'a close frame (no status or 1000)' : `a close frame with ${code}`;
    const f = await this.readFrame(ms, what);
    assert.ok(f.opcode === OP.CLOSE && f.fin && f.rsv === 0, `expected ${what}, got ${describe(f)}`);
    if (code === null)
      assert.ok(
        f.payload.length === 0 || (f.payload.length >= 2 && f.payload.readUInt16BE(0) === 1000),
        `expected ${what}, got ${describe(f)}`,
      );
    else {
      assert.ok(f.payload.length >= 2, `expected ${what}, got a close frame without a status code`);
      assert.equal(f.payload.readUInt16BE(0), code, `expected ${what}, got ${describe(f)}`);
    }
    assert.doesNotThrow(
      () => new TextDecoder('utf-8', { fatal: true }).decode(f.payload.subarray(2)),
      'the close reason is UTF-8',
    );
    await this.waitFor(
      () => (this.ended ? true : undefined),
      ms,
      'the server to close TCP after its close frame',
    );
    assert.ok(!this.reset, 'the server reset the connection instead of closing it');
    assert.equal(
      this.frames.length,
      0,
      `frames after the close frame: ${this.frames.map(describe).join(', ')}`,
    );
    assert.equal(this.queue.length, 0, 'bytes after the close frame');
  }

  /** The client's clean close: a close with `code`, answered with the same code, then TCP closed. */
  async closeNormally(code = 1000): Promise<void> {
    this.sendClose(code);
    await this.expectClose(code);
  }

  /** Nothing arrives for `ms` (no frame, no close). */
  async expectSilence(ms: number): Promise<void> {
    await sleep(ms);
    assert.equal(this.frames.length, 0, `unexpected: ${this.frames.map(describe).join(', ')}`);
    assert.ok(!this.ended, 'the server closed the connection');
  }

  destroy(): void {
    this.socket.destroy();
  }
}
