/**
 * Every Node.js internal netloom relies on, in one place. Each buys speed; none is needed for correctness:
 * without it the engine takes a public path that is slower. They are detected once per process, a loopback
 * self-test confirms the I/O ones at the first `serve()` ({@link verifyIoPath}), the path in use is in
 * `engine.stats().io` and one log line, and `NETLOOM_IO=portable` forces every fallback (CI runs the engine
 * and HTTP suites that way), so a Node release that changes one of them makes netloom slower, never wrong.
 *
 * 1. Handle adoption (reads). An accepted `net.Socket`'s `_handle` (a `TCPWrap`/`PipeWrap` with `readStart`)
 *    can be moved into `new net.Socket({ handle, onread })`, which then reads into the loop's one shared
 *    buffer through `onread` (public for `net.connect`, not for accepted sockets). Without it the accepted
 *    socket is kept as it is and bytes arrive as `data` events, one allocated chunk per read.
 * 2. `process.binding('stream_wrap')` (writes). `WriteWrap`, `streamBaseState[kLastWriteWasAsync]`, and a
 *    stream handle's `writeBuffer(req, buf)` / `writev(req, chunks, true)`, which return 0 or a negative errno
 *    and, when libuv queued part of the write, complete through `req.oncomplete(status)`. `process.binding`
 *    is allow-listed for userland; under `--pending-deprecation` it warns, so it is not used then. Without it
 *    writes go through `socket.write` (Node's `Writable`, a `WriteWrap` and a `nextTick` per write).
 * 3. A stream handle's `writeQueueSize` (bytes libuv still holds), which lets a lingering close see progress
 *    of its last write (on TLS, that of the TCP handle under the TLSWrap, its `_parent`). Without it the
 *    socket's `writableLength` stands in.
 * 4. `Buffer#latin1Slice(start, end)`, `#latin1Write(text, offset)` and `#utf8Write(text, offset, length)`:
 *    the string codecs without `toString`/`write`'s argument handling. Without them, `toString`/`write`.
 * 5. A listening `net.Server`'s `_handle.onconnection(status, clientHandle)`, which Node calls with each
 *    accepted handle. Taking it over lets the loop make the one socket it keeps (with `onread`) straight from
 *    the handle, instead of Node making a socket that adoption (1) destroys at once: half the objects per
 *    accept, and no garbage socket for the collector. Without it the `connection` event and (1) serve.
 * 7. `net.Socket`'s private `onread` symbols (`kBuffer`, `kBufferCb`, found by value on a probe socket) and a
 *    stream handle's `useUserBuffer(buf)`: set on a `TLSSocket` after its handshake, its decrypted bytes land
 *    in the loop's shared buffer like a TCP socket's (Node honours `onread` only for sockets it makes itself).
 *    Without them TLS reads arrive as `data` events.
 * 6. A server-side `TLSSocket`'s `_handle.verifyError()` (the peer certificate's verification result, which
 *    `tls.Server` reads to set `authorized`): the engine runs its own handshakes on `TLSSocket`s, so it reads it
 *    the same way. Without it a listener that asks for client certificates refuses to start.
 */
import net from 'node:net';

/** How a loop moves bytes: what {@link verifyIoPath} found, or what `NETLOOM_IO=portable` forced. */
export interface IoPath {
  /** `onread`: accepted handles adopted, reads into the loop's shared buffer; `stream`: `data` events. */
  readonly read: 'onread' | 'stream';
  /** `handle`: straight to libuv with a reused `WriteWrap`; `socket`: `socket.write`. */
  readonly write: 'handle' | 'socket';
  /** `native`: Buffer's latin1/utf8 codec methods; `portable`: `toString`/`write`. */
  readonly strings: 'native' | 'portable';
  /** Why a path is the slower one (empty when every fast path is in use). */
  readonly fallbacks: readonly string[];
}

/** The request object a stream handle takes; it must come from the binding's `WriteWrap` template. */
export interface WriteReq {
  oncomplete: ((this: WriteReq, status: number) => void) | null;
  async: boolean;
  bytes: number;
  /** Keeps the written memory alive while libuv holds it. */
  buffer: unknown;
  /** Who to tell when a queued write completes. */
  owner: unknown;
}

/** A stream handle's write methods (libuv `uv_stream_t` under `TCPWrap`/`PipeWrap`). */
export interface StreamHandle {
  writeBuffer(req: WriteReq, data: Uint8Array): number;
  writev(req: WriteReq, chunks: readonly Uint8Array[], allBuffers: true): number;
  readonly writeQueueSize?: number;
}

/** The parts of Node's `stream_wrap` binding the direct writer uses. */
export interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}

type HandleSocket = net.Socket & { _handle: (StreamHandle & { readStart?: unknown }) | null };

/** `NETLOOM_IO=portable` forces every fallback path (tests run the suites that way too). */
const forcedPortable = process.env.NETLOOM_IO === 'portable';
if (process.env.NETLOOM_IO !== undefined && process.env.NETLOOM_IO !== '' && !forcedPortable) {
  process.emitWarning(`NETLOOM_IO=${process.env.NETLOOM_IO} is not known (only "portable"); ignored`, {
    code: 'NETLOOM_IO',
  });
}

// ---- 2. the stream_wrap binding ---------------------------------------------------------------------------

function loadStreamWrap(): StreamWrapBinding | string {
  if (forcedPortable) return 'NETLOOM_IO=portable';
  // Node takes `--pending_deprecation` for `--pending-deprecation`, and NODE_PENDING_DEPRECATION=1 turns it on too.
  const flags = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`.replaceAll('_', '-');
  if (flags.includes('--pending-deprecation') || process.env.NODE_PENDING_DEPRECATION?.[0] === '1')
    return 'pending deprecation is on (the binding would warn)';
  const getBinding = (process as { binding?: (name: string) => unknown }).binding;
  // Under pending deprecation Node replaces `binding` with a warning wrapper (`deprecated`): never call that.
  if (typeof getBinding !== 'function' || getBinding.name !== 'binding') return 'process.binding is missing';
  try {
    const b = getBinding('stream_wrap') as Partial<StreamWrapBinding>;
    if (
      typeof b.WriteWrap === 'function' &&
      b.streamBaseState instanceof Int32Array &&
      typeof b.kLastWriteWasAsync === 'number'
    ) {
      return b as StreamWrapBinding;
    }
    return "process.binding('stream_wrap') lacks WriteWrap or streamBaseState";
  } catch (err) {
    return `process.binding('stream_wrap') failed: ${(err as Error).message}`;
  }
}

const streamWrapOrReason = loadStreamWrap();

/** The `stream_wrap` binding, or null where it cannot be used (see internal 2). */
export const streamWrap: StreamWrapBinding | null =
  typeof streamWrapOrReason === 'string' ? null : streamWrapOrReason;

// ---- 1 and 3. handles -------------------------------------------------------------------------------------

/**
 * Moves an accepted socket's handle into a socket that reads through `onread` (internal 1), or returns null
 * when the socket has no usable handle (the caller keeps the socket and reads `data` events).
 */
export function adoptHandle(raw: net.Socket, onread: net.OnReadOpts): net.Socket | null {
  const handle = (raw as HandleSocket)._handle;
  if (handle === null || typeof handle !== 'object' || typeof handle.readStart !== 'function') return null;
  (raw as HandleSocket)._handle = null;
  raw.destroy();
  return socketOfHandle(handle as unknown as ClientHandle, onread);
}

/** The socket's stream handle for direct writes, or null while it has none (closed, or still connecting). */
export function socketHandle(socket: net.Socket): StreamHandle | null {
  return (socket as HandleSocket)._handle ?? null;
}

/** An accepted connection's libuv handle, as Node hands it to a listening handle's `onconnection`. */
export interface ClientHandle {
  readStart(): number;
  close(cb?: () => void): void;
  setNoDelay?(enable: boolean): number;
}

type ListenHandle = { onconnection?: unknown };

/**
 * Takes over accepting on a listening server (internal 5): `accept` gets every accepted handle, and
 * `failed` every accept error (Node would emit them as the server's `error`). False, with nothing changed,
 * where the server has no such handle.
 */
export function takeAccepts(
  server: net.Server,
  accept: (handle: ClientHandle) => void,
  failed: (errno: number) => void,
): boolean {
  const handle = (server as net.Server & { _handle?: ListenHandle | null })._handle;
  if (handle === null || handle === undefined || typeof handle.onconnection !== 'function') return false;
  handle.onconnection = (status: number, client: ClientHandle | undefined) => {
    if (status !== 0 || client === undefined) failed(status);
    else accept(client);
  };
  return true;
}

/** A socket that reads through `onread` over an accepted handle (internals 1 and 5). */
export function socketOfHandle(handle: ClientHandle, onread: net.OnReadOpts): net.Socket {
  return new net.Socket({
    handle,
    allowHalfOpen: true,
    readable: true,
    writable: true,
    onread,
  } as unknown as net.SocketConstructorOpts);
}

/**
 * Bytes libuv still holds for `socket` (internal 3), or -1 where the handle does not say. A TLS socket's
 * TLSWrap reports only what it held at its last write; the TCP handle under it (`_parent`) drains live, so
 * a large TLS write shows progress there.
 */
export function handleQueueSize(socket: net.Socket): number {
  const handle = (socket as HandleSocket)._handle as
    | (StreamHandle & { _parent?: StreamHandle })
    | null
    | undefined;
  const size = (handle?._parent ?? handle)?.writeQueueSize;
  return typeof size === 'number' ? size : -1;
}

// ---- 7. TLS reads into the shared buffer -----------------------------------------------------------------

/** net.Socket's private symbols for `onread`, read off a probe socket, or null where they are not found. */
const onreadSymbols: { kBuffer: symbol; kBufferCb: symbol } | null = (() => {
  if (forcedPortable) return null;
  try {
    const buffer = Buffer.alloc(1);
    const callback = () => true;
    const probe = new net.Socket({ onread: { buffer, callback } } as net.SocketConstructorOpts);
    let kBuffer: symbol | null = null;
    let kBufferCb: symbol | null = null;
    for (const sym of Object.getOwnPropertySymbols(probe)) {
      const value = (probe as unknown as Record<symbol, unknown>)[sym];
      if (value === buffer) kBuffer = sym;
      else if (value === callback) kBufferCb = sym;
    }
    probe.destroy();
    return kBuffer !== null && kBufferCb !== null ? { kBuffer, kBufferCb } : null;
  } catch {
    return null;
  }
})();

/**
 * Makes a TLS socket read into `onread.buffer` through `onread.callback` from now on (internal 7); false,
 * with nothing changed, where Node does not allow it (the socket keeps emitting `data`).
 */
export function tlsReadInto(socket: import('node:tls').TLSSocket, onread: net.OnReadOpts): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (buf: Uint8Array) => void } })._handle;
  if (onreadSymbols === null || typeof handle?.useUserBuffer !== 'function') return false;
  const buffer = typeof onread.buffer === 'function' ? null : onread.buffer;
  if (buffer === null) return false;
  handle.useUserBuffer(buffer);
  const fields = socket as unknown as Record<symbol, unknown>;
  fields[onreadSymbols.kBuffer] = buffer;
  fields[onreadSymbols.kBufferCb] = onread.callback;
  return true;
}

// ---- 6. TLS peer verification --------------------------------------------------------------------------------

/**
 * The verification error of a server-side TLS socket's peer certificate (null when it verified), or
 * `undefined` where Node does not expose it (internal 6).
 */
export function tlsVerifyError(socket: import('node:tls').TLSSocket): Error | null | undefined {
  const handle = (socket as unknown as { _handle?: { verifyError?: () => Error | null } })._handle;
  if (typeof handle?.verifyError !== 'function') return undefined;
  return handle.verifyError();
}

// ---- 4. string codecs -------------------------------------------------------------------------------------

type NativeCodecs = Buffer & {
  latin1Slice(start: number, end: number): string;
  latin1Write(text: string, offset: number): number;
  utf8Write(text: string, offset: number, length?: number): number;
};

const nativeStrings =
  !forcedPortable &&
  typeof (Buffer.prototype as NativeCodecs).latin1Slice === 'function' &&
  typeof (Buffer.prototype as NativeCodecs).latin1Write === 'function' &&
  typeof (Buffer.prototype as NativeCodecs).utf8Write === 'function';

/** Decodes `buf[start, end)` as latin1 (one character per byte), the way header text is exposed. */
export const latin1: (buf: Uint8Array, start: number, end: number) => string = nativeStrings
  ? (buf, start, end) => (buf as NativeCodecs).latin1Slice(start, end)
  : (buf, start, end) =>
      Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('latin1', start, end);

/** Writes `text` (every character below U+0100) into `buf` at `offset` as latin1; returns the bytes written. */
export const writeLatin1: (buf: Buffer, text: string, offset: number) => number = nativeStrings
  ? (buf, text, offset) => (buf as NativeCodecs).latin1Write(text, offset)
  : (buf, text, offset) => buf.write(text, offset, 'latin1');

/** Writes `text` into `buf` at `offset` as UTF-8, at most `length` bytes; returns the bytes written. */
export const writeUtf8: (buf: Buffer, text: string, offset: number, length?: number) => number = nativeStrings
  ? (buf, text, offset, length) => (buf as NativeCodecs).utf8Write(text, offset, length)
  : (buf, text, offset, length) => buf.write(text, offset, length ?? buf.length - offset, 'utf8');

// ---- the path in use --------------------------------------------------------------------------------------

function detected(): IoPath {
  const fallbacks: string[] = [];
  if (forcedPortable) fallbacks.push('NETLOOM_IO=portable');
  else {
    if (typeof streamWrapOrReason === 'string') fallbacks.push(`write: ${streamWrapOrReason}`);
    if (!nativeStrings) fallbacks.push('strings: Buffer#latin1Slice/latin1Write/utf8Write missing');
  }
  return {
    read: forcedPortable ? 'stream' : 'onread',
    write: streamWrap === null ? 'socket' : 'handle',
    strings: nativeStrings ? 'native' : 'portable',
    fallbacks,
  };
}

let current: IoPath = detected();
let verifying: Promise<IoPath> | null = null;

/** The I/O path of this thread: detected, then confirmed by {@link verifyIoPath} or given by {@link useIoPath}. */
export function ioPath(): IoPath {
  return current;
}

/** Takes the path another thread verified (loop workers use the main thread's result; strings stay local). */
export function useIoPath(path: IoPath): void {
  const local = detected();
  current = {
    read: path.read,
    write: path.write === 'handle' && streamWrap !== null ? 'handle' : 'socket',
    strings: local.strings,
    fallbacks: path.fallbacks,
  };
}

/**
 * Confirms the fast I/O paths once per process with a loopback connection: an adopted handle must deliver
 * bytes through `onread` (not as `data` events), and a direct handle write must reach the peer. A path that
 * fails is replaced by its fallback and named in `fallbacks`. Where loopback cannot be used, detection stands.
 */
export function verifyIoPath(): Promise<IoPath> {
  verifying ??= selfTest(current).then((path) => {
    current = path;
    return path;
  });
  return verifying;
}

const PROBE_MS = 1000;

async function selfTest(path: IoPath): Promise<IoPath> {
  if (path.read === 'stream' && path.write === 'socket') return path;
  const server = net.createServer({ pauseOnConnect: true });
  const sockets: net.Socket[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
  } catch {
    return path; // no loopback here: detection stands
  }
  try {
    const port = (server.address() as net.AddressInfo).port;
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = net.connect(port, '127.0.0.1');
    sockets.push(client);
    client.on('error', () => {});
    const raw = await withTimeout(accepted, PROBE_MS);
    if (raw === null) return path;
    sockets.push(raw);
    const fallbacks = [...path.fallbacks];
    let read = path.read;
    let viaOnread = 0;
    let viaData = 0;
    const onread = {
      buffer: Buffer.allocUnsafe(64),
      callback(n: number): boolean {
        viaOnread += n;
        return true;
      },
    };
    const adopted = read === 'onread' ? adoptHandle(raw, onread) : null;
    if (read === 'onread' && adopted === null) {
      read = 'stream';
      fallbacks.push('read: an accepted socket has no adoptable handle');
    }
    const served = adopted ?? raw;
    sockets.push(served);
    served.on('error', () => {});
    served.on('data', (d: Buffer) => {
      viaData += d.length;
    });
    served.resume();
    client.write('netloom');
    await until(() => viaOnread + viaData >= 7);
    if (read === 'onread' && viaOnread !== 7) {
      read = 'stream';
      fallbacks.push(
        `read: an adopted handle delivered ${viaOnread} bytes through onread, ${viaData} as data`,
      );
    }
    let write = path.write;
    if (write === 'handle') {
      let echoed = '';
      client.on('data', (d: Buffer) => {
        echoed += d.toString('latin1');
      });
      if (directWrite(served, Buffer.from('netloom', 'latin1'))) await until(() => echoed.length >= 7);
      if (echoed !== 'netloom') {
        write = 'socket';
        fallbacks.push('write: a direct handle write did not reach the peer');
      }
    }
    return { read, write, strings: path.strings, fallbacks };
  } finally {
    for (const s of sockets) s.destroy();
    server.close();
  }
}

/** Polls `done` every millisecond for up to {@link PROBE_MS}. */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + PROBE_MS;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
}

/** Writes `bytes` straight to the socket's handle with a fresh `WriteWrap`; false if the call failed. */
function directWrite(socket: net.Socket, bytes: Buffer): boolean {
  const handle = socketHandle(socket);
  if (handle === null || streamWrap === null) return false;
  try {
    const req = new streamWrap.WriteWrap();
    req.oncomplete = () => {};
    req.buffer = bytes;
    return handle.writeBuffer(req, bytes) === 0;
  } catch {
    return false;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), ms);
    }),
  ]);
}
