// WebSocket helpers shared by the gateway's WebSocket tests: client frames built by hand, and stopping a ws
// server (its close waits for its clients).
import { randomBytes } from 'node:crypto';
import type { WebSocketServer } from 'ws';

/** Closes a ws server, its clients first (its close waits for them). */
export function stopServer(wss: WebSocketServer): Promise<void> {
  for (const s of wss.clients) s.terminate();
  return new Promise<void>((resolve) => wss.close(() => resolve()));
}

/** A client frame (masked unless `mask` is false). */
export function frame(
  opcode: number,
  payload: Buffer,
  options: { fin?: boolean; mask?: boolean } = {},
): Buffer {
  const fin = options.fin ?? true;
  const mask = options.mask ?? true;
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + ext + (mask ? 4 : 0));
  head[0] = (fin ? 0x80 : 0) | opcode;
  head[1] = (mask ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127);
  if (ext === 2) head.writeUInt16BE(len, 2);
  if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2);
  if (!mask) return Buffer.concat([head, payload]);
  const key = randomBytes(4);
  key.copy(head, 2 + ext);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return Buffer.concat([head, body]);
}
