/**
 * HTTP/2 frames (RFC 9113 §4, §6): the 9-octet header, the frame types and flags, error codes, the SETTINGS
 * parameters with their bounds, and writers for the frames a server sends. Reading checks what a frame must
 * be before its payload is looked at (length against SETTINGS_MAX_FRAME_SIZE, stream 0 or not, fixed sizes),
 * and says which error it is: a connection error (GOAWAY) or a stream error (RST_STREAM).
 */

/** Frame types (§6). Unknown types are ignored (§4.1, §5.5). */
export const DATA = 0x0;
export const HEADERS = 0x1;
export const PRIORITY = 0x2;
export const RST_STREAM = 0x3;
export const SETTINGS = 0x4;
export const PUSH_PROMISE = 0x5;
export const PING = 0x6;
export const GOAWAY = 0x7;
export const WINDOW_UPDATE = 0x8;
export const CONTINUATION = 0x9;

/** Flags (§6). */
export const END_STREAM = 0x1;
export const ACK = 0x1;
export const END_HEADERS = 0x4;
export const PADDED = 0x8;
export const PRIORITY_FLAG = 0x20;

/** Error codes (§7). */
export const NO_ERROR = 0x0;
export const PROTOCOL_ERROR = 0x1;
export const INTERNAL_ERROR = 0x2;
export const FLOW_CONTROL_ERROR = 0x3;
export const SETTINGS_TIMEOUT = 0x4;
export const STREAM_CLOSED = 0x5;
export const FRAME_SIZE_ERROR = 0x6;
export const REFUSED_STREAM = 0x7;
export const CANCEL = 0x8;
export const COMPRESSION_ERROR = 0x9;
export const CONNECT_ERROR = 0xa;
export const ENHANCE_YOUR_CALM = 0xb;
export const INADEQUATE_SECURITY = 0xc;
export const HTTP_1_1_REQUIRED = 0xd;

/** SETTINGS parameters (§6.5.2). */
export const SETTINGS_HEADER_TABLE_SIZE = 0x1;
export const SETTINGS_ENABLE_PUSH = 0x2;
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
export const SETTINGS_MAX_FRAME_SIZE = 0x5;
export const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

/** The client connection preface (§3.4). */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const FRAME_HEADER = 9;
/** The smallest SETTINGS_MAX_FRAME_SIZE (and the initial one), and the largest allowed (§6.5.2). */
export const MIN_MAX_FRAME_SIZE = 16_384;
export const MAX_MAX_FRAME_SIZE = 16_777_215;
export const MAX_WINDOW = 2 ** 31 - 1;

/** A protocol violation: `stream` 0 for a connection error (GOAWAY), else a stream error (RST_STREAM). */
export class Http2Error extends Error {
  readonly code: number;
  readonly stream: number;
  constructor(code: number, message: string, stream = 0) {
    super(message);
    this.name = 'Http2Error';
    this.code = code;
    this.stream = stream;
  }
}

/** A frame header, read in place (the payload follows at `offset + 9`). */
export interface FrameHeader {
  length: number;
  type: number;
  flags: number;
  stream: number;
}

/** Reads the header at `buf[p]` (9 octets must be there) into `out`; the reserved bit is ignored (§4.1). */
export function readFrameHeader(buf: Uint8Array, p: number, out: FrameHeader): FrameHeader {
  out.length = (buf[p]! << 16) | (buf[p + 1]! << 8) | buf[p + 2]!;
  out.type = buf[p + 3]!;
  out.flags = buf[p + 4]!;
  out.stream = (buf[p + 5]! & 0x7f) * 2 ** 24 + ((buf[p + 6]! << 16) | (buf[p + 7]! << 8) | buf[p + 8]!);
  return out;
}

/**
 * The checks every frame must pass before its payload is read (§4.2, §6): its size against our
 * SETTINGS_MAX_FRAME_SIZE, and the stream and length rules of its type. Throws {@link Http2Error}.
 */
export function checkFrame(h: FrameHeader, maxFrameSize: number): void {
  if (h.length > maxFrameSize) {
    // A frame that could change connection state is a connection error (§4.2); so is any on stream 0.
    const connection =
      h.stream === 0 ||
      h.type === HEADERS ||
      h.type === SETTINGS ||
      h.type === CONTINUATION ||
      h.type === PUSH_PROMISE;
    throw new Http2Error(
      FRAME_SIZE_ERROR,
      `a frame of ${h.length} octets, over ${maxFrameSize}`,
      connection ? 0 : h.stream,
    );
  }
  switch (h.type) {
    case DATA:
    case HEADERS:
    case CONTINUATION:
      if (h.stream === 0) throw new Http2Error(PROTOCOL_ERROR, `a ${typeName(h.type)} frame on stream 0`);
      break;
    case PRIORITY:
      if (h.stream === 0) throw new Http2Error(PROTOCOL_ERROR, 'a PRIORITY frame on stream 0');
      if (h.length !== 5)
        throw new Http2Error(FRAME_SIZE_ERROR, `a PRIORITY frame of ${h.length} octets`, h.stream);
      break;
    case RST_STREAM:
      if (h.stream === 0) throw new Http2Error(PROTOCOL_ERROR, 'a RST_STREAM frame on stream 0');
      if (h.length !== 4) throw new Http2Error(FRAME_SIZE_ERROR, `a RST_STREAM frame of ${h.length} octets`);
      break;
    case SETTINGS:
      if (h.stream !== 0) throw new Http2Error(PROTOCOL_ERROR, 'a SETTINGS frame on a stream');
      if ((h.flags & ACK) !== 0 && h.length !== 0)
        throw new Http2Error(FRAME_SIZE_ERROR, 'a SETTINGS ack with a payload');
      if (h.length % 6 !== 0)
        throw new Http2Error(FRAME_SIZE_ERROR, `a SETTINGS frame of ${h.length} octets`);
      break;
    case PUSH_PROMISE:
      // A client never sends PUSH_PROMISE (§8.4).
      throw new Http2Error(PROTOCOL_ERROR, 'a PUSH_PROMISE from a client');
    case PING:
      if (h.stream !== 0) throw new Http2Error(PROTOCOL_ERROR, 'a PING frame on a stream');
      if (h.length !== 8) throw new Http2Error(FRAME_SIZE_ERROR, `a PING frame of ${h.length} octets`);
      break;
    case GOAWAY:
      if (h.stream !== 0) throw new Http2Error(PROTOCOL_ERROR, 'a GOAWAY frame on a stream');
      if (h.length < 8) throw new Http2Error(FRAME_SIZE_ERROR, `a GOAWAY frame of ${h.length} octets`);
      break;
    case WINDOW_UPDATE:
      if (h.length !== 4)
        throw new Http2Error(FRAME_SIZE_ERROR, `a WINDOW_UPDATE frame of ${h.length} octets`);
      break;
  }
}

const NAMES = [
  'DATA',
  'HEADERS',
  'PRIORITY',
  'RST_STREAM',
  'SETTINGS',
  'PUSH_PROMISE',
  'PING',
  'GOAWAY',
  'WINDOW_UPDATE',
  'CONTINUATION',
];
export function typeName(type: number): string {
  return NAMES[type] ?? `type 0x${type.toString(16)}`;
}

/** The settings a peer has in force (§6.5.2 initial values). */
export interface Settings {
  headerTableSize: number;
  enablePush: boolean;
  maxConcurrentStreams: number;
  initialWindowSize: number;
  maxFrameSize: number;
  maxHeaderListSize: number;
}

export function defaultSettings(): Settings {
  return {
    headerTableSize: 4096,
    enablePush: true,
    maxConcurrentStreams: Number.POSITIVE_INFINITY,
    initialWindowSize: 65_535,
    maxFrameSize: MIN_MAX_FRAME_SIZE,
    maxHeaderListSize: Number.POSITIVE_INFINITY,
  };
}

/**
 * Applies a SETTINGS payload to `into` (§6.5.2); unknown parameters are ignored. Throws {@link Http2Error}
 * for a value out of bounds: ENABLE_PUSH not 0 or 1 and MAX_FRAME_SIZE out of range are PROTOCOL_ERROR,
 * INITIAL_WINDOW_SIZE above 2^31-1 is FLOW_CONTROL_ERROR.
 */
export function applySettings(buf: Uint8Array, start: number, length: number, into: Settings): void {
  for (let p = start; p < start + length; p += 6) {
    const id = (buf[p]! << 8) | buf[p + 1]!;
    const value = buf[p + 2]! * 2 ** 24 + ((buf[p + 3]! << 16) | (buf[p + 4]! << 8) | buf[p + 5]!);
    switch (id) {
      case SETTINGS_HEADER_TABLE_SIZE:
        into.headerTableSize = value;
        break;
      case SETTINGS_ENABLE_PUSH:
        if (value > 1) throw new Http2Error(PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH of ${value}`);
        into.enablePush = value === 1;
        break;
      case SETTINGS_MAX_CONCURRENT_STREAMS:
        into.maxConcurrentStreams = value;
        break;
      case SETTINGS_INITIAL_WINDOW_SIZE:
        if (value > MAX_WINDOW)
          throw new Http2Error(FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE of ${value}`);
        into.initialWindowSize = value;
        break;
      case SETTINGS_MAX_FRAME_SIZE:
        if (value < MIN_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE) {
          throw new Http2Error(PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE of ${value}`);
        }
        into.maxFrameSize = value;
        break;
      case SETTINGS_MAX_HEADER_LIST_SIZE:
        into.maxHeaderListSize = value;
        break;
    }
  }
}

/** Writes a frame header into `buf` at `p`; returns `p + 9`. */
export function writeFrameHeader(
  buf: Uint8Array,
  p: number,
  length: number,
  type: number,
  flags: number,
  stream: number,
): number {
  buf[p] = (length >>> 16) & 0xff;
  buf[p + 1] = (length >>> 8) & 0xff;
  buf[p + 2] = length & 0xff;
  buf[p + 3] = type;
  buf[p + 4] = flags;
  buf[p + 5] = (stream >>> 24) & 0x7f;
  buf[p + 6] = (stream >>> 16) & 0xff;
  buf[p + 7] = (stream >>> 8) & 0xff;
  buf[p + 8] = stream & 0xff;
  return p + FRAME_HEADER;
}

/** A SETTINGS frame with `pairs` (id, value). */
export function settingsFrame(pairs: readonly (readonly [number, number])[]): Buffer {
  const buf = Buffer.alloc(FRAME_HEADER + pairs.length * 6);
  let p = writeFrameHeader(buf, 0, pairs.length * 6, SETTINGS, 0, 0);
  for (const [id, value] of pairs) {
    buf.writeUInt16BE(id, p);
    buf.writeUInt32BE(value, p + 2);
    p += 6;
  }
  return buf;
}

/** GOAWAY with the last stream processed, a code and an optional debug text (§6.8). */
export function goawayFrame(lastStream: number, code: number, debug = ''): Buffer {
  const text = Buffer.from(debug, 'utf8');
  const buf = Buffer.alloc(FRAME_HEADER + 8 + text.length);
  writeFrameHeader(buf, 0, 8 + text.length, GOAWAY, 0, 0);
  buf.writeUInt32BE(lastStream & 0x7fffffff, 9);
  buf.writeUInt32BE(code, 13);
  text.copy(buf, 17);
  return buf;
}

/** RST_STREAM (§6.4). */
export function rstStreamFrame(stream: number, code: number): Buffer {
  const buf = Buffer.alloc(FRAME_HEADER + 4);
  writeFrameHeader(buf, 0, 4, RST_STREAM, 0, stream);
  buf.writeUInt32BE(code, 9);
  return buf;
}

/** WINDOW_UPDATE (§6.9). */
export function windowUpdateFrame(stream: number, increment: number): Buffer {
  const buf = Buffer.alloc(FRAME_HEADER + 4);
  writeFrameHeader(buf, 0, 4, WINDOW_UPDATE, 0, stream);
  buf.writeUInt32BE(increment & 0x7fffffff, 9);
  return buf;
}
