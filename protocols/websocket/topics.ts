/**
 * Pub/sub across the engine's loops: subscribers are kept per loop; a publish delivers on its own loop at
 * once and is posted once to the other loops (a `BroadcastChannel` named after the engine), each of which
 * delivers to its own subscribers. The frame is built once per message and loop (once more, compressed, for
 * connections that agreed on permessage-deflate), never once per subscriber.
 */

import { BroadcastChannel } from 'node:worker_threads';
import type { EventLoop } from '../../core/index.ts';
import { deflateMessage } from './deflate.ts';

/** What a topic holds: a connection that takes shared frames. */
export interface Subscriber {
  readonly open: boolean;
  /** The window bits to compress an `n`-octet message with for it, or 0 to send it plain. */
  compressesAt(n: number): number;
  /** A frame built once for many (never modified after). */
  sendFrame(frame: Buffer): void;
}

/** A message crossing to the other loops. */
interface Published {
  topic: string;
  data: Uint8Array;
  binary: boolean;
}

/** A frame header for `opcode` and `n` payload octets, unmasked (a server's). */
export function frameHeader(opcode: number, n: number, rsv = 0): Buffer {
  const head = Buffer.allocUnsafe(n < 126 ? 2 : n < 65_536 ? 4 : 10);
  head[0] = 0x80 | rsv | opcode;
  if (n < 126) head[1] = n;
  else if (n < 65_536) {
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 127;
    head.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    head.writeUInt32BE(n >>> 0, 6);
  }
  return head;
}

/** One loop's topics of one WebSocket server. */
export class Topics {
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  private channel: BroadcastChannel | null = null;
  private readonly name: string;
  private loop: EventLoop | null = null;

  constructor(name: string) {
    this.name = name;
  }

  /** Joins the engine's channel (once per loop; the first connection does it). */
  attach(loop: EventLoop): void {
    if (this.loop !== null) return;
    this.loop = loop;
    if (loop.loops === 1) return; // nobody to tell
    const channel = new BroadcastChannel(`${loop.engineId}:websocket:${this.name}`);
    (channel as unknown as { unref?(): void }).unref?.();
    channel.onmessage = (event: unknown) => {
      const m = (event as { data: Published }).data;
      this.deliver(m.topic, Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength), m.binary, null);
    };
    this.channel = channel;
  }

  subscribe(ws: Subscriber, topic: string): void {
    let set = this.subscribers.get(topic);
    if (set === undefined) {
      set = new Set();
      this.subscribers.set(topic, set);
    }
    set.add(ws);
  }

  unsubscribe(ws: Subscriber, topic: string): void {
    const set = this.subscribers.get(topic);
    if (set === undefined) return;
    set.delete(ws);
    if (set.size === 0) this.subscribers.delete(topic);
  }

  /** Subscribers of `topic` on this loop. */
  count(topic: string): number {
    return this.subscribers.get(topic)?.size ?? 0;
  }

  /** Publishes on every loop; `except` (a sender) is skipped on this one. */
  publish(topic: string, message: string | Uint8Array, binary: boolean, except: Subscriber | null): void {
    const data = typeof message === 'string' ? Buffer.from(message) : message;
    this.deliver(topic, data, binary, except);
    // An exact copy crosses (a view would carry its whole underlying buffer through the clone).
    this.channel?.postMessage({
      topic,
      data: Uint8Array.prototype.slice.call(data),
      binary,
    } satisfies Published);
  }

  /** Sends `data` to this loop's subscribers of `topic`: the frame made once (and once compressed). */
  private deliver(topic: string, data: Uint8Array, binary: boolean, except: Subscriber | null): void {
    const set = this.subscribers.get(topic);
    if (set === undefined) return;
    const opcode = binary ? 0x2 : 0x1;
    let plain: Buffer | null = null;
    let compressed: Buffer | null = null;
    let compressedBits = 0;
    for (const ws of set) {
      if (ws === except || !ws.open) continue;
      const bits = ws.compressesAt(data.byteLength);
      if (bits === 0) {
        plain ??= Buffer.concat([frameHeader(opcode, data.byteLength), data]);
        ws.sendFrame(plain);
      } else {
        if (compressed === null || compressedBits !== bits) {
          const payload = deflateMessage(data, bits);
          compressed = Buffer.concat([frameHeader(opcode, payload.length, 0x40), payload]);
          compressedBits = bits;
        }
        ws.sendFrame(compressed);
      }
    }
  }
}
