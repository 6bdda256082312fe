import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

/**
 * Writes straight to a socket's libuv stream handle, skipping `Writable.write`: its argument checks, state
 * updates, a `WriteWrap` per call and the `nextTick` that reports every write. libuv tries the write at once
 * (`uv_try_write`) and queues what the kernel did not take; it keeps the order of every write on a handle,
 * so these and the socket's own writes never overtake each other as long as nothing sits in the socket's
 * JS-side queue (callers check `writableLength === 0`).
 *
 * It needs Node's `stream_wrap` binding (`process.binding`, allow-listed for userland and unchanged since
 * Node 12). Where it is missing, or `--pending-deprecation` would make it warn, `handleWriter` is null and
 * connections write through the socket as before.
 */

/** The request object a stream handle takes; it must come from the binding's `WriteWrap` template. */
interface WriteReq {
  oncomplete: ((this: WriteReq, status: number) => void) | null;
  async: boolean;
  bytes: number;
  /** Keeps the written memory alive while libuv holds it. */
  buffer: unknown;
  /** Who to tell when a queued write completes. */
  owner: WriteOwner | null;
}

/** A stream handle's write methods (libuv `uv_stream_t` under `TCPWrap`/`PipeWrap`). */
interface StreamHandle {
  writeBuffer(req: WriteReq, data: Uint8Array): number;
  writev(req: WriteReq, chunks: readonly Uint8Array[], allBuffers: true): number;
}

interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

/** The side that queued a write and hears when libuv finished it. */
export interface WriteOwner {
  /** A queued write of `bytes` completed; `status` is 0 or a negative libuv error. */
  writeDone(bytes: number, status: number): void;
}

/** What one write did: 0 (all taken by the kernel), 1 (some queued in libuv), or a negative errno. */
export type WriteOutcome = number;
export const WRITTEN = 0;
export const QUEUED = 1;

function loadBinding(): StreamWrapBinding | null {
  // Node takes `--pending_deprecation` for `--pending-deprecation`, and NODE_PENDING_DEPRECATION=1 turns it on too.
  const flags = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`.replaceAll('_', '-');
  if (flags.includes('--pending-deprecation') || process.env.NODE_PENDING_DEPRECATION?.[0] === '1')
    return null;
  const getBinding = (process as { binding?: (name: string) => unknown }).binding;
  // Under pending deprecation Node replaces `binding` with a warning wrapper (`deprecated`): never call that.
  if (typeof getBinding !== 'function' || getBinding.name !== 'binding') return null;
  try {
    const b = getBinding('stream_wrap') as Partial<StreamWrapBinding>;
    if (
      typeof b.WriteWrap === 'function' &&
      b.streamBaseState instanceof Int32Array &&
      typeof b.kLastWriteWasAsync === 'number'
    ) {
      return b as StreamWrapBinding;
    }
  } catch {
    // Not available in this runtime: the socket path serves.
  }
  return null;
}

function onQueuedWriteDone(this: WriteReq, status: number): void {
  const owner = this.owner;
  const bytes = this.bytes;
  this.owner = null;
  this.buffer = null;
  owner?.writeDone(bytes, status);
}

/** Writes to socket handles; one instance per thread (the binding and a spare request are shared). */
export class HandleWriter {
  private readonly binding: StreamWrapBinding;
  /** A request no queued write holds: a write the kernel takes at once leaves its request unused. */
  private spare: WriteReq;

  constructor(binding: StreamWrapBinding) {
    this.binding = binding;
    this.spare = this.newReq();
  }

  private newReq(): WriteReq {
    const req = new this.binding.WriteWrap();
    req.oncomplete = onQueuedWriteDone;
    req.async = false;
    req.bytes = 0;
    req.buffer = null;
    req.owner = null;
    return req;
  }

  /** The handle to write to directly, or null when the socket's own path must be used. */
  handleOf(socket: Socket): StreamHandle | null {
    if (socket.connecting || socket.writableLength !== 0) return null;
    const handle = (socket as Socket & { _handle: StreamHandle | null })._handle;
    return handle ?? null;
  }

  /** Writes `data`; if libuv queues part of it, `owner.writeDone` follows. */
  write(handle: StreamHandle, data: Uint8Array, owner: WriteOwner): WriteOutcome {
    const req = this.spare;
    const err = handle.writeBuffer(req, data);
    return this.settle(req, err, data, data.byteLength, owner);
  }

  /** Writes `chunks` in order (`bytes` in all) as one `writev`. The array may be reused after the call. */
  writev(
    handle: StreamHandle,
    chunks: readonly Uint8Array[],
    bytes: number,
    owner: WriteOwner,
  ): WriteOutcome {
    const req = this.spare;
    const err = handle.writev(req, chunks, true);
    return this.settle(req, err, chunks, bytes, owner);
  }

  private settle(req: WriteReq, err: number, data: unknown, bytes: number, owner: WriteOwner): WriteOutcome {
    if (err !== 0) return err;
    if (this.binding.streamBaseState[this.binding.kLastWriteWasAsync] === 0) return WRITTEN;
    // libuv now holds `req` (and the memory): it is this write's until it completes.
    req.buffer = Array.isArray(data) ? data.slice() : data;
    req.bytes = bytes;
    req.owner = owner;
    this.spare = this.newReq();
    return QUEUED;
  }
}

/** The error Node raises for a failed socket write (`code` is the errno name, e.g. `EPIPE`). */
export function writeError(errno: number): NodeJS.ErrnoException {
  let code: string;
  try {
    code = getSystemErrorName(errno);
  } catch {
    code = `E${-errno}`;
  }
  const err: NodeJS.ErrnoException = new Error(`write ${code}`);
  err.code = code;
  err.errno = errno;
  err.syscall = 'write';
  return err;
}

const binding = loadBinding();

/** The thread's direct writer, or null where the binding is unavailable. */
export const handleWriter: HandleWriter | null = binding === null ? null : new HandleWriter(binding);
