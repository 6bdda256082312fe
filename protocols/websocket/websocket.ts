/**
 * One WebSocket connection, server side: messages out (frames written in place, unmasked), the reader's
 * messages and control frames in, the close handshake (RFC 6455 §7), an idle timeout with automatic pings,
 * a close timeout, and backpressure as uWebSockets has it: `send` says whether the message went, waits, or
 * was dropped past `maxBackpressure`.
 */
import { randomFillSync } from 'node:crypto';
import type { Conn } from '../../core/index.ts';
import { deflateMessage } from './deflate.ts';
import {
  CLOSE_ABNORMAL,
  CLOSE_NO_STATUS,
  CLOSE_NORMAL,
  validCloseCode,
  type WebSocketError,
  wsError,
} from './errors.ts';
import { OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Receiver, type ReceiverSink } from './receiver.ts';
import type { ResolvedBehavior } from './server.ts';
import type { Subscriber, Topics } from './topics.ts';

/** What `send` did: the message went out (below the high-water mark), waits in the buffer, or was dropped. */
export type SendStatus = 'sent' | 'buffered' | 'dropped';

// The connection's states.
const OPEN = 0;
/** We sent a close frame and wait for the peer's (`closeTimeout`). */
const CLOSING = 1;
const CLOSED = 2;

export class WebSocket<UserData = unknown> implements ReceiverSink, Subscriber {
  /** The user's slot (given to `upgrade`). */
  data: UserData;
  /** The subprotocol agreed on, or ''. */
  readonly protocol: string;
  /** @internal */ readonly conn: Conn;
  private readonly behavior: ResolvedBehavior<UserData>;
  private readonly receiver: Receiver;
  private state = OPEN;
  /** A ping went out for idleness and no frame came since. */
  private pinged = false;
  /** `send` returned 'buffered': `drain` is owed once the buffer empties. */
  private wantsDrain = false;
  private closeCode = CLOSE_ABNORMAL;
  private closeReason = '';
  private told = false;

  /** The window bits our deflate uses, or 0 when permessage-deflate was not agreed. */
  private readonly deflateBits: number;
  /** Messages shorter than this go uncompressed. */
  private readonly threshold: number;
  private readonly topics: Topics | null;
  /** A client's side: frames go out masked, the server's come in unmasked (§5.1). */
  private readonly client: boolean;
  /** The topics this connection is subscribed to (null: none yet). */
  private subscribed: Set<string> | null = null;

  /** @internal Made by the upgrade. */
  constructor(
    conn: Conn,
    behavior: ResolvedBehavior<UserData>,
    data: UserData,
    protocol: string,
    deflateBits = 0,
    threshold = 1024,
    topics: Topics | null = null,
    client = false,
  ) {
    this.topics = topics;
    this.client = client;
    this.conn = conn;
    this.behavior = behavior;
    this.data = data;
    this.protocol = protocol;
    this.deflateBits = deflateBits;
    this.threshold = threshold;
    this.receiver = new Receiver(behavior.maxPayload, !client, deflateBits !== 0);
    conn.setDeadline(behavior.idleTimeout);
  }

  /** Whether the connection is open for messages (not closing or closed). */
  get open(): boolean {
    return this.state === OPEN && !this.conn.closed;
  }

  /** Outbound bytes not yet taken by the kernel. */
  get bufferedAmount(): number {
    return this.conn.outboundBuffered;
  }

  /** The peer's address. */
  get remoteAddress(): string {
    return this.conn.remoteAddress;
  }

  /**
   * Sends a message (a string as text, bytes as binary unless `binary` says otherwise). Past
   * `maxBackpressure` it is dropped (and with `closeOnBackpressureLimit` the connection closes with 1008);
   * 'buffered' means it waits behind others: `drain` follows when they are out.
   */
  send(message: string | Uint8Array, binary = typeof message !== 'string'): SendStatus {
    if (!this.open) return 'dropped';
    // Bytes go out at the end of the turn, and the connection sends buffers of 16 KiB and more by
    // reference: a caller's large buffer is copied, so reusing it after `send` cannot change the message.
    const payload =
      typeof message === 'string'
        ? Buffer.from(message)
        : message.byteLength >= 16_384
          ? Buffer.from(message)
          : message;
    const conn = this.conn;
    if (conn.outboundBuffered + payload.byteLength > this.behavior.maxBackpressure) {
      if (this.behavior.closeOnBackpressureLimit) {
        this.fail(wsError('backpressure', 'the client does not keep up'));
        return 'dropped';
      }
      // A sender that waits for `drain` after a drop gets it once there is room again.
      this.wantsDrain = true;
      conn.whenWritable();
      return 'dropped';
    }
    if (this.deflateBits !== 0 && payload.byteLength >= this.threshold)
      this.frame(binary ? OP_BINARY : OP_TEXT, deflateMessage(payload, this.deflateBits), RSV1);
    else this.frame(binary ? OP_BINARY : OP_TEXT, payload);
    // Buffered from half the backpressure limit (or the loop's high-water mark, if lower): a sender hears
    // of the queue before its messages are dropped.
    const soft = Math.min(conn.loop.options.highWaterMark, this.behavior.maxBackpressure >>> 1);
    if (conn.outboundBuffered <= soft) return 'sent';
    this.wantsDrain = true;
    if (conn.whenWritable()) {
      this.wantsDrain = false;
      return 'sent';
    }
    return 'buffered';
  }

  /** Subscribes to `topic`: messages published to it, on any loop of the engine, reach this connection. */
  subscribe(topic: string): void {
    if (!this.open || this.topics === null) return;
    this.subscribed ??= new Set();
    this.subscribed.add(topic);
    this.topics.subscribe(this, topic);
  }

  unsubscribe(topic: string): void {
    if (this.subscribed?.delete(topic) !== true) return;
    this.topics?.unsubscribe(this, topic);
  }

  isSubscribed(topic: string): boolean {
    return this.subscribed?.has(topic) === true;
  }

  /** Publishes to `topic`'s subscribers on every loop, this connection excepted. */
  publish(topic: string, message: string | Uint8Array, binary = typeof message !== 'string'): void {
    this.topics?.publish(topic, message, binary, this);
  }

  /** @internal The window bits to compress an `n`-octet message with, or 0 to send it plain. */
  compressesAt(n: number): number {
    return this.deflateBits !== 0 && n >= this.threshold ? this.deflateBits : 0;
  }

  /**
   * @internal A frame built once for many connections (a publish): dropped past `maxBackpressure` (or
   * closing with 1008 when the behaviour says so), never modified after.
   */
  sendFrame(frame: Buffer): void {
    const conn = this.conn;
    if (conn.outboundBuffered + frame.length > this.behavior.maxBackpressure) {
      if (this.behavior.closeOnBackpressureLimit)
        this.fail(wsError('backpressure', 'the client does not keep up'));
      return;
    }
    conn.writeShared(frame); // the same frame for every subscriber: by reference, not copied each time
  }

  /** Sends a ping (at most 125 octets of payload). */
  ping(payload: string | Uint8Array = EMPTY): void {
    if (!this.open) return;
    const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
    if (data.byteLength > 125) throw new RangeError('a ping payload is at most 125 octets');
    this.frame(OP_PING, data);
  }

  /**
   * Starts the close handshake with `code` and `reason` (at most 123 octets of UTF-8); the connection ends
   * when the peer answers, or after `closeTimeout`.
   */
  close(code = CLOSE_NORMAL, reason = ''): void {
    if (this.state !== OPEN) return;
    if (!validCloseCode(code)) throw new RangeError(`close code ${code} may not be sent`);
    const text = Buffer.from(reason);
    if (text.length > 123) throw new RangeError('a close reason is at most 123 octets');
    this.sendClose(code, text);
    this.state = CLOSING;
    this.closeCode = code;
    this.closeReason = reason;
    this.conn.setDeadline(this.behavior.closeTimeout);
  }

  /** Ends the connection at once, without the close handshake. */
  terminate(): void {
    this.state = CLOSED;
    this.conn.destroy();
  }

  // ---- frames out ----------------------------------------------------------------------------------

  /** A frame with `payload`: unmasked from a server, masked with a fresh key from a client (§5.1, §5.3). */
  private frame(opcode: number, payload: Uint8Array, rsv = 0): void {
    if (this.client) {
      this.maskedFrame(opcode, payload, rsv);
      return;
    }
    const conn = this.conn;
    const n = payload.byteLength;
    const buf = conn.reserve(10 + (n < 4096 ? n : 0));
    let p = conn.reservedAt;
    buf[p++] = 0x80 | rsv | opcode;
    if (n < 126) buf[p++] = n;
    else if (n < 65_536) {
      buf[p++] = 126;
      buf.writeUInt16BE(n, p);
      p += 2;
    } else {
      buf[p++] = 127;
      buf.writeUInt32BE(Math.floor(n / 2 ** 32), p);
      buf.writeUInt32BE(n >>> 0, p + 4);
      p += 8;
    }
    if (n < 4096) {
      buf.set(payload, p);
      conn.commit(p + n);
    } else {
      conn.commit(p);
      conn.write(payload);
    }
  }

  private maskedFrame(opcode: number, payload: Uint8Array, rsv: number): void {
    const n = payload.byteLength;
    const head = n < 126 ? 2 : n < 65_536 ? 4 : 10;
    const out = Buffer.allocUnsafe(head + 4 + n);
    out[0] = 0x80 | rsv | opcode;
    if (n < 126) out[1] = 0x80 | n;
    else if (n < 65_536) {
      out[1] = 0x80 | 126;
      out.writeUInt16BE(n, 2);
    } else {
      out[1] = 0x80 | 127;
      out.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
      out.writeUInt32BE(n >>> 0, 6);
    }
    randomFillSync(out, head, 4);
    for (let i = 0; i < n; i++) out[head + 4 + i] = payload[i]! ^ out[head + (i & 3)]!;
    this.conn.write(out);
  }

  private sendClose(code: number, reason: Buffer): void {
    const payload = Buffer.allocUnsafe(2 + reason.length);
    payload.writeUInt16BE(code, 0);
    reason.copy(payload, 2);
    this.frame(OP_CLOSE, payload);
  }

  // ---- frames in -----------------------------------------------------------------------------------

  /** @internal Bytes arrived. */
  traffic(): void {
    if (this.state === CLOSED) {
      this.conn.discard();
      return;
    }
    this.pinged = false;
    if (this.state === OPEN) this.conn.setDeadline(this.behavior.idleTimeout);
    try {
      this.receiver.read(this.conn, this);
    } catch (err) {
      if (!isWebSocketError(err)) throw err;
      this.fail(err);
    }
  }

  onMessage(data: Buffer, binary: boolean): void {
    if (this.state !== OPEN) return; // after our close frame, messages are not the handler's
    try {
      this.behavior.message(this, binary ? data : data.toString('utf8'), binary);
    } catch (err) {
      this.handlerFailed('message', err);
    }
  }

  /** A behaviour callback threw: logged, and the connection closes with 1011 (never the loop's problem). */
  handlerFailed(stage: string, err: unknown): void {
    this.conn.loop.log.error(`websocket ${stage} handler threw`, { error: err });
    this.fail(wsError('handler', `the server failed in ${stage}`));
  }

  onPing(data: Buffer): void {
    if (this.state === OPEN) this.frame(OP_PONG, data);
  }

  onPong(_data: Buffer): void {}

  onCloseFrame(code: number, reason: string): void {
    if (this.state === OPEN) {
      // The peer closes first: we answer with its code (§5.5.1), then end the connection.
      if (code === CLOSE_NO_STATUS) this.frame(OP_CLOSE, EMPTY);
      else this.sendClose(code, Buffer.from(reason));
    }
    this.closeCode = code;
    this.closeReason = reason;
    this.state = CLOSED;
    this.conn.close();
  }

  /** A violation (or a limit): the close code it maps to goes out, and the connection ends. */
  private fail(err: WebSocketError): void {
    if (this.state === CLOSED) return;
    if (this.state === OPEN) this.sendClose(err.closeCode, Buffer.from(err.message.slice(0, 120)));
    this.closeCode = err.closeCode;
    this.closeReason = err.message;
    this.state = CLOSED;
    this.conn.close(err);
  }

  // ---- timers and the end --------------------------------------------------------------------------

  /** @internal The deadline passed: idle (ping first, then close 1001), or the close handshake timed out. */
  deadline(): void {
    if (this.state === CLOSING) {
      // Our close frame went unanswered: no close frame came, so the close was abnormal (§7.1.5).
      this.state = CLOSED;
      this.closeCode = CLOSE_ABNORMAL;
      this.closeReason = '';
      this.conn.destroy();
      return;
    }
    if (this.state !== OPEN) return;
    if (this.behavior.sendPingsAutomatically && !this.pinged) {
      this.pinged = true;
      this.frame(OP_PING, EMPTY);
      this.conn.setDeadline(this.behavior.idleTimeout);
      return;
    }
    this.fail(wsError('timeout', 'idle for too long'));
  }

  /** @internal The outbound buffer drained. */
  writable(): void {
    if (!this.wantsDrain || this.state !== OPEN) return;
    this.wantsDrain = false;
    try {
      this.behavior.drain?.(this);
    } catch (err) {
      this.handlerFailed('drain', err);
    }
  }

  /** @internal The peer ended the TCP connection (a close without the handshake is 1006). */
  eof(): void {
    if (this.state !== CLOSED) {
      // No close frame came: the close was abnormal whatever we had sent (§7.1.5).
      this.state = CLOSED;
      this.closeCode = CLOSE_ABNORMAL;
      this.closeReason = '';
    }
    this.conn.close();
  }

  /** @internal The connection is gone: `close` is told once, with the code the handshake ended on. */
  closed(): void {
    this.state = CLOSED;
    if (this.subscribed !== null) {
      for (const topic of this.subscribed) this.topics?.unsubscribe(this, topic);
      this.subscribed = null;
    }
    if (this.told) return;
    this.told = true;
    try {
      this.behavior.close?.(this, this.closeCode, this.closeReason);
    } catch (err) {
      this.conn.loop.log.error('websocket close handler threw', { error: err });
    }
  }
}

const EMPTY = Buffer.alloc(0);
/** RSV1: the message is compressed (RFC 7692 §6). */
const RSV1 = 0x40;

function isWebSocketError(err: unknown): err is WebSocketError {
  return err instanceof Error && err.name === 'WebSocketError';
}
