import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Conn } from './conn.ts';
import type { EventLoop } from './loop.ts';

/**
 * The transport of a {@link MemoryPipe}: the part of `net.Socket` a `Conn` uses, over memory. The "kernel"
 * takes every write at once (nothing is ever queued), and reads are whatever the pipe's peer side delivers.
 */
class MemorySocket extends EventEmitter {
  /** Bytes the connection wrote, in order. */
  readonly written: Buffer[] = [];
  readonly writableLength = 0;
  readonly connecting = false;
  readonly remoteAddress: string | undefined = undefined;
  readonly remotePort: number | undefined = undefined;
  readonly localAddress: string | undefined = undefined;
  readonly localPort: number | undefined = undefined;
  readonly _handle = null;
  paused = false;
  ended = false;
  destroyed = false;
  /** A 'close' owed to the loop (emitted a tick after destroy, as sockets do, or by `MemoryPipe.settle`). */
  closePending = false;
  onResume: (() => void) | null = null;

  write(data: Uint8Array, cb?: (err?: Error | null) => void): boolean {
    if (!this.destroyed && !this.ended) this.written.push(Buffer.from(data));
    if (cb !== undefined) process.nextTick(cb);
    return true;
  }

  cork(): void {}
  uncork(): void {}

  pause(): this {
    this.paused = true;
    return this;
  }

  resume(): this {
    this.paused = false;
    this.onResume?.();
    return this;
  }

  end(): this {
    this.ended = true;
    return this;
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.closePending = true;
    process.nextTick(() => this.emitClose());
    return this;
  }

  emitClose(): void {
    if (!this.closePending) return;
    this.closePending = false;
    this.emit('close', false);
  }
}

/**
 * An in-memory connection on a loop, for tests of handlers and codecs (Go's `net.Pipe` in spirit): every
 * {@link read} is delivered as one read of exactly those bytes, what the handler writes is collected, and no
 * socket is involved. The connection is a real `Conn` the loop serves like an accepted one (the same arena,
 * timers, callbacks, close rules); only its transport is memory, and it never counts as accepted. Made by
 * `loop.pipe(handler)`; loop thread only.
 */
export class MemoryPipe<Ctx = unknown> {
  /** The connection the handler sees. */
  readonly conn: Conn<Ctx>;
  private readonly socket: MemorySocket;
  private readonly loop: EventLoop;
  /** Reads held while the connection does not read (paused), delivered once it resumes. */
  private readonly held: Buffer[] = [];
  /** The peer's FIN, held behind the reads it came after. */
  private endHeld = false;
  /** The peer sent its FIN: nothing more comes from it (held or delivered). */
  private peerEnded = false;

  /** @internal Use `loop.pipe`. */
  constructor(loop: EventLoop, conn: Conn<Ctx>, socket: unknown) {
    this.loop = loop;
    this.conn = conn;
    this.socket = socket as MemorySocket;
    this.socket.onResume = () => {
      if (this.held.length !== 0 || this.endHeld) setImmediate(() => this.pump());
    };
  }

  /** @internal A transport for a new pipe's connection. */
  static transport(): Socket {
    return new MemorySocket() as unknown as Socket;
  }

  /**
   * The peer sends `bytes`: they arrive as one read (at once, or when the connection reads again if it is
   * paused). Ignored once the connection is closed.
   */
  read(bytes: Uint8Array): void {
    if (this.socket.destroyed || this.peerEnded) return;
    // A copy, as a socket's read is: the peer may reuse its buffer, and a lent view may be written back.
    const copy = Buffer.from(bytes);
    if (this.socket.paused || this.held.length !== 0) {
      this.held.push(copy);
      return;
    }
    this.loop.onData(this.conn as Conn, copy, copy.length);
  }

  /** Delivers held reads (and a FIN behind them) now, as far as the connection reads. */
  pump(): void {
    while (this.held.length !== 0 && !this.socket.paused && !this.socket.destroyed) {
      const next = this.held.shift()!;
      this.loop.onData(this.conn as Conn, next, next.length);
    }
    if (this.endHeld && this.held.length === 0 && !this.socket.paused && !this.socket.destroyed) {
      this.endHeld = false;
      this.loop.onEnd(this.conn as Conn);
    }
  }

  /** Reads held because the connection stopped reading. */
  get heldReads(): number {
    return this.held.length;
  }

  /** Whether the connection is reading (not paused by its handler or by backpressure). */
  get reading(): boolean {
    return !this.socket.paused;
  }

  /**
   * The peer closes its sending side (FIN): the handler's `onEof` runs, as for a socket, after every read
   * sent before it (so later than now if the connection holds reads while paused). Reads and ends after it
   * are ignored, as no socket delivers bytes after its FIN.
   */
  end(): void {
    if (this.socket.destroyed || this.peerEnded) return;
    this.peerEnded = true;
    this.endHeld = true;
    this.pump();
  }

  /** The peer resets the connection: it closes at once with `ECONNRESET`. */
  reset(): void {
    const err: NodeJS.ErrnoException = new Error('read ECONNRESET');
    err.code = 'ECONNRESET';
    this.conn.destroy(err);
  }

  /** Everything the connection wrote since the last call (staged bytes are flushed first). */
  take(): Buffer {
    if (!this.socket.destroyed) this.conn.flush();
    const out = Buffer.concat(this.socket.written);
    this.socket.written.length = 0;
    return out;
  }

  /** Whether the connection has sent its FIN (closing or closed). */
  get ended(): boolean {
    return this.socket.ended || this.socket.destroyed;
  }

  /** Whether the connection is gone (destroyed; its `onClose` may still be owed, see {@link settle}). */
  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  /**
   * Runs now what a socket would run a tick later: the close of a destroyed connection (its `onClose`), so a
   * synchronous test sees the handler's whole reaction.
   */
  settle(): void {
    this.socket.emitClose();
  }

  /** Ends the pipe: destroys the connection if it is still there and runs its close. */
  dispose(): void {
    this.conn.destroy();
    this.settle();
  }
}
