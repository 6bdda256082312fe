/**
 * The WebSocket frame reader (RFC 6455 §5): an explicit state machine over the connection's inbound buffer,
 * read in place. Every rule is judged as soon as the bytes that break it are in: reserved bits, opcodes,
 * masking, control frame sizes and fragmentation at the frame's first two octets; `maxPayload` at the
 * length, before a byte of payload is buffered; UTF-8 as text arrives, so a bad byte fails the message at
 * once. A message whole in one read is handed over as a view (no copy); others are assembled.
 */
import type { Conn } from '../../core/index.ts';
import { inflateMessage } from './deflate.ts';
import { CLOSE_NO_STATUS, validCloseCode, wsError } from './errors.ts';
import { Utf8Validator } from './utf8.ts';

// Opcodes (§5.2).
export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

// The reader's states.
const INFO = 0; // the first two octets of a frame
const LENGTH_16 = 1;
const LENGTH_64 = 2;
const MASK = 3;
const DATA = 4;
/** A close frame was read: nothing after it is read (§5.5.1). */
const CLOSED = 5;

/** What the reader hands over. Views are valid only during the call. */
export interface ReceiverSink {
  onMessage(data: Buffer, binary: boolean): void;
  onPing(data: Buffer): void;
  onPong(data: Buffer): void;
  /** The peer's close frame (`code` 1005 when it had none). */
  onCloseFrame(code: number, reason: string): void;
}

const EMPTY = Buffer.alloc(0);

export class Receiver {
  private state = INFO;
  private fin = false;
  private opcode = 0;
  private masked = false;
  private readonly mask = new Uint8Array(4);
  private rsv1 = false;
  /** Payload octets of the current frame still to come. */
  private remaining = 0;
  private frameLength = 0;
  /** Inside a message sent in fragments (its first frame had no FIN). */
  private fragmented = false;
  /** The current message's opcode (text or binary), from its first frame. */
  private messageKind = 0;
  /** Octets of the current message so far (all its frames). */
  private messageLength = 0;
  /**
   * The message being assembled, copied into one buffer that grows (doubling, up to `maxPayload`): a
   * message of a million one-octet fragments costs its length, not a million buffers.
   */
  private assembly: Buffer | null = null;
  private readonly utf8 = new Utf8Validator();
  /** Bytes of a control frame assembled across reads (at most 125). */
  private control: Buffer | null = null;
  private controlLength = 0;
  private readonly maxPayload: number;
  private readonly server: boolean;
  /** permessage-deflate was agreed: RSV1 marks a compressed message. */
  private readonly deflate: boolean;
  /** The current message is compressed (RSV1 on its first frame). */
  private compressed = false;

  /**
   * @param maxPayload Largest message (all its fragments) accepted; larger is close 1009.
   * @param server Frames from a client must be masked (a server's must not be).
   */
  constructor(maxPayload: number, server: boolean, deflate = false) {
    this.maxPayload = maxPayload;
    this.server = server;
    this.deflate = deflate;
  }

  /** Reads what `conn` has buffered; throws a {@link WebSocketError} at the first violation. */
  read(conn: Conn, sink: ReceiverSink): void {
    for (;;) {
      const avail = conn.inboundBuffered;
      const buf = conn.buffer;
      const off = conn.offset;
      switch (this.state) {
        case INFO: {
          if (avail < 2) return;
          this.info(buf[off]!, buf[off + 1]!);
          conn.discard(2);
          break;
        }
        case LENGTH_16:
          if (avail < 2) return;
          this.haveLength(buf.readUInt16BE(off));
          conn.discard(2);
          break;
        case LENGTH_64: {
          if (avail < 8) return;
          const high = buf.readUInt32BE(off);
          // Anything at or past 2^53 is no length a message here could have.
          if (high > 0x1fffff) throw wsError('tooBig', 'a frame length past 2^53');
          this.haveLength(high * 2 ** 32 + buf.readUInt32BE(off + 4));
          conn.discard(8);
          break;
        }
        case MASK:
          if (avail < 4) return;
          for (let i = 0; i < 4; i++) this.mask[i] = buf[off + i]!;
          conn.discard(4);
          this.state = DATA;
          break;
        case DATA: {
          if (this.opcode >= OP_CLOSE) {
            if (!this.controlPayload(conn, sink)) return;
            break;
          }
          if (this.remaining === 0) {
            this.endFrame(sink);
            break;
          }
          if (avail === 0) return;
          this.dataPayload(conn, sink, buf, off, Math.min(avail, this.remaining));
          break;
        }
        case CLOSED:
          conn.discard(); // after a close frame nothing is read (§5.5.1)
          return;
      }
    }
  }

  /** The frame's first two octets. */
  private info(b0: number, b1: number): void {
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    // RSV1 is permessage-deflate's, on a message's first frame only (RFC 7692 §6); RSV2 and RSV3 are nobody's.
    const rsv1 = (b0 & 0x40) !== 0;
    if ((b0 & 0x30) !== 0 || (rsv1 && (!this.deflate || (opcode !== OP_TEXT && opcode !== OP_BINARY))))
      throw wsError('rsv', 'a reserved bit set without an extension that defines it');
    const length = b1 & 0x7f;
    if (opcode >= OP_CLOSE) {
      if (opcode > OP_PONG) throw wsError('opcode', `a reserved control opcode 0x${opcode.toString(16)}`);
      if (!fin) throw wsError('control', 'a fragmented control frame');
      if (length > 125)
        throw wsError('control', `a control frame of ${length > 126 ? 'over 125' : length} octets`);
    } else if (opcode === OP_CONTINUATION) {
      if (!this.fragmented) throw wsError('fragment', 'a continuation frame with no message to continue');
    } else if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (this.fragmented) throw wsError('fragment', 'a new message inside a fragmented one');
    } else {
      throw wsError('opcode', `a reserved data opcode 0x${opcode.toString(16)}`);
    }
    this.masked = (b1 & 0x80) !== 0;
    if (this.server && !this.masked) throw wsError('unmasked', 'an unmasked frame from a client');
    if (!this.server && this.masked) throw wsError('masked', 'a masked frame from a server');
    this.fin = fin;
    this.opcode = opcode;
    this.rsv1 = rsv1;
    if (length === 126) this.state = LENGTH_16;
    else if (length === 127) this.state = LENGTH_64;
    else this.haveLength(length);
  }

  private haveLength(length: number): void {
    if (this.opcode < OP_CLOSE) {
      // The limit is on the message: checked before any of it is buffered.
      if (this.messageLength + length > this.maxPayload)
        throw wsError('tooBig', `a message over ${this.maxPayload} octets`);
      if (this.opcode !== OP_CONTINUATION) {
        this.messageKind = this.opcode;
        this.compressed = this.rsv1;
        if (this.opcode === OP_TEXT) this.utf8.reset();
      }
      this.fragmented = !this.fin;
    }
    this.frameLength = length;
    this.remaining = length;
    this.state = this.masked ? MASK : DATA;
  }

  /** Unmasks `n` payload octets in place (they are ours to consume) from where the frame stands. */
  private unmask(buf: Buffer, off: number, n: number): void {
    if (!this.masked) return;
    const m = this.mask;
    // The key rotated to where this piece of the payload starts, then four octets a step.
    const k = (this.frameLength - this.remaining) & 3;
    const m0 = m[k]!;
    const m1 = m[(k + 1) & 3]!;
    const m2 = m[(k + 2) & 3]!;
    const m3 = m[(k + 3) & 3]!;
    let i = off;
    const whole = off + (n & ~3);
    for (; i < whole; i += 4) {
      buf[i]! ^= m0;
      buf[i + 1]! ^= m1;
      buf[i + 2]! ^= m2;
      buf[i + 3]! ^= m3;
    }
    const end = off + n;
    if (i < end) buf[i++]! ^= m0;
    if (i < end) buf[i++]! ^= m1;
    if (i < end) buf[i]! ^= m2;
  }

  private dataPayload(conn: Conn, sink: ReceiverSink, buf: Buffer, off: number, n: number): void {
    this.unmask(buf, off, n);
    const kind = this.messageKind;
    // Compressed text is judged once inflated; plain text as it arrives.
    if (kind === OP_TEXT && !this.compressed && !this.utf8.feed(buf, off, off + n))
      throw wsError('utf8', 'invalid UTF-8 in a text message');
    const whole = this.fin && this.opcode !== OP_CONTINUATION && n === this.frameLength && !this.compressed;
    if (whole) {
      // A message in one frame, all in this read: handed over in place.
      const view = buf.subarray(off, off + n);
      this.remaining = 0;
      this.state = INFO;
      this.messageLength = 0;
      conn.discard(n);
      if (kind === OP_TEXT && !this.utf8.complete)
        throw wsError('utf8', 'a text message ending inside a character');
      sink.onMessage(view, kind === OP_BINARY);
      return;
    }
    if (n > 0) this.append(buf, off, n);
    this.messageLength += n;
    this.remaining -= n;
    conn.discard(n);
    if (this.remaining === 0) this.endFrame(sink);
  }

  /** Copies `n` octets of the message being assembled (`messageLength` counts them after). */
  private append(buf: Buffer, off: number, n: number): void {
    const used = this.messageLength;
    let into = this.assembly;
    if (into === null || into.length < used + n) {
      const size = Math.min(this.maxPayload, Math.max(used + n, (into?.length ?? 0) * 2, 1024));
      const grown = Buffer.allocUnsafe(size);
      into?.copy(grown, 0, 0, used);
      into = this.assembly = grown;
    }
    buf.copy(into, used, off, off + n);
  }

  /** A data frame's payload is all in. */
  private endFrame(sink: ReceiverSink): void {
    if (this.opcode >= OP_CLOSE) return;
    this.state = INFO;
    if (!this.fin) return;
    const kind = this.messageKind;

    const length = this.messageLength;

    this.messageLength = 0;
    let data = this.assembly === null ? EMPTY : this.assembly.subarray(0, length);
    this.assembly = null;
    if (this.compressed) {
      this.compressed = false;
      data = inflateMessage(data, this.maxPayload);
      if (kind === OP_TEXT) {
        this.utf8.reset();
        if (!this.utf8.feed(data, 0, data.length)) throw wsError('utf8', 'invalid UTF-8 in a text message');
      }
    }
    if (kind === OP_TEXT && !this.utf8.complete)
      throw wsError('utf8', 'a text message ending inside a character');
    sink.onMessage(data, kind === OP_BINARY);
  }

  /** A control frame's payload (at most 125 octets): acted on once whole. */
  private controlPayload(conn: Conn, sink: ReceiverSink): boolean {
    const avail = conn.inboundBuffered;
    const want = this.remaining;
    let payload: Buffer;
    if (this.control === null && avail >= want) {
      payload = conn.buffer.subarray(conn.offset, conn.offset + want);
      this.unmask(payload, 0, want);
      conn.discard(want);
    } else {
      // Split over reads: gathered in a small buffer of its own.
      if (this.control === null) {
        this.control = Buffer.allocUnsafe(125);
        this.controlLength = 0;
      }
      const n = Math.min(avail, want);
      const part = conn.buffer.subarray(conn.offset, conn.offset + n);
      this.unmask(part, 0, n);
      part.copy(this.control, this.controlLength);
      this.controlLength += n;
      this.remaining -= n;
      conn.discard(n);
      if (this.remaining > 0) return false;
      payload = this.control.subarray(0, this.controlLength);
      this.control = null;
    }
    this.remaining = 0;
    this.state = INFO;
    switch (this.opcode) {
      case OP_PING:
        sink.onPing(payload);
        break;
      case OP_PONG:
        sink.onPong(payload);
        break;
      default:
        this.state = CLOSED;
        this.closeFrame(payload, sink);
    }
    return true;
  }

  private closeFrame(payload: Buffer, sink: ReceiverSink): void {
    if (payload.length === 0) {
      sink.onCloseFrame(CLOSE_NO_STATUS, '');
      return;
    }
    if (payload.length === 1) throw wsError('closeFrame', 'a close frame of one octet');
    const code = payload.readUInt16BE(0);
    if (!validCloseCode(code)) throw wsError('closeFrame', `close code ${code}`);
    const reason = new Utf8Validator();
    if (!reason.feed(payload, 2, payload.length) || !reason.complete)
      throw wsError('utf8', 'a close reason that is not UTF-8');
    sink.onCloseFrame(code, payload.toString('utf8', 2));
  }
}
