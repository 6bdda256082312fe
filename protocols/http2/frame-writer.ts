/**
 * Frames written in place into a connection's staging buffer (`reserve`/`commit`): what both ends of the
 * codec send the same way, the server's connection and the client's.
 */
import type { Conn } from '../../core/index.ts';
import {
  CONTINUATION,
  END_HEADERS,
  END_STREAM,
  FRAME_HEADER,
  GOAWAY,
  HEADERS,
  RST_STREAM,
  WINDOW_UPDATE,
  writeFrameHeader,
} from './frames.ts';

/** A frame carrying one 32-bit word (RST_STREAM's code, WINDOW_UPDATE's increment). */
function wordFrame(conn: Conn, type: number, stream: number, word: number): void {
  const buf = conn.reserve(FRAME_HEADER + 4);
  const p = writeFrameHeader(buf, conn.reservedAt, 4, type, 0, stream);
  buf.writeUInt32BE(word, p);
  conn.commit(p + 4);
}

export function writeRstStream(conn: Conn, stream: number, code: number): void {
  wordFrame(conn, RST_STREAM, stream, code);
}

export function writeWindowUpdate(conn: Conn, stream: number, increment: number): void {
  wordFrame(conn, WINDOW_UPDATE, stream, increment);
}

/** GOAWAY naming `last` and `code`, with up to 200 characters of `debug` text. */
export function writeGoaway(conn: Conn, last: number, code: number, debug: string): void {
  const text = Buffer.from(debug.slice(0, 200), 'utf8');
  const buf = conn.reserve(FRAME_HEADER + 8 + text.length);
  const p = writeFrameHeader(buf, conn.reservedAt, 8 + text.length, GOAWAY, 0, 0);
  buf.writeUInt32BE(last & 0x7fffffff, p);
  buf.writeUInt32BE(code, p + 4);
  text.copy(buf, p + 8);
  conn.commit(p + 8 + text.length);
}

/** A header block as HEADERS and as many CONTINUATION frames as `maxFrameSize` needs. */
export function writeHeaderBlock(
  conn: Conn,
  stream: number,
  block: Buffer,
  endStream: boolean,
  maxFrameSize: number,
): void {
  const total = block.length;
  let done = Math.min(total, maxFrameSize);
  let buf = conn.reserve(FRAME_HEADER + done);
  let p = writeFrameHeader(
    buf,
    conn.reservedAt,
    done,
    HEADERS,
    (done === total ? END_HEADERS : 0) | (endStream ? END_STREAM : 0),
    stream,
  );
  block.copy(buf, p, 0, done);
  conn.commit(p + done);
  while (done < total) {
    const n = Math.min(total - done, maxFrameSize);
    buf = conn.reserve(FRAME_HEADER + n);
    p = writeFrameHeader(buf, conn.reservedAt, n, CONTINUATION, done + n === total ? END_HEADERS : 0, stream);
    block.copy(buf, p, done, done + n);
    conn.commit(p + n);
    done += n;
  }
}
