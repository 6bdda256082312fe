import { getSystemErrorName } from 'node:util';
import { type StreamHandle, type StreamWrapBinding, streamWrap, type WriteReq } from './node-internals.ts';

/**
 * Writes straight to a socket's libuv stream handle, skipping `Writable.write`: its argument checks, state
 * updates, a `WriteWrap` per call and the `nextTick` that reports every write. libuv tries the write at once
 * (`uv_try_write`) and queues what the kernel did not take; it keeps the order of every write on a handle,
 * so these and the socket's own writes never overtake each other as long as nothing sits in the socket's
 * JS-side queue (callers check `writableLength === 0`).
 *
 * It needs Node's `stream_wrap` binding (internal 2 in node-internals.ts). Where it is missing, or the loop's
 * I/O path is `socket`, loops have no writer and connections write through the socket.
 */

/** The side that queued a write and hears when libuv finished it. */
export interface WriteOwner {
  /** A queued write of `bytes` completed; `status` is 0 or a negative libuv error. */
  writeDone(bytes: number, status: number): void;
}

/** What one write did: 0 (all taken by the kernel), 1 (some queued in libuv), or a negative errno. */
export type WriteOutcome = number;
export const WRITTEN = 0;
export const QUEUED = 1;

function onQueuedWriteDone(this: WriteReq, status: number): void {
  const owner = this.owner as WriteOwner | null;
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

let shared: HandleWriter | null = null;

/** The thread's direct writer (one per thread: it holds a spare request), or null without the binding. */
export function threadHandleWriter(): HandleWriter | null {
  if (streamWrap === null) return null;
  shared ??= new HandleWriter(streamWrap);
  return shared;
}
