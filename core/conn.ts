import type { Socket } from 'node:net';
import { type PeerCertificate, TLSSocket } from 'node:tls';
import { type NetloomError, netloomError } from './errors.ts';
import { QUEUED, WRITTEN, type WriteOwner, writeError } from './handle-write.ts';
import type { EventHandler } from './handler.ts';
import type { EventLoop } from './loop.ts';
import { handleQueueSize, socketHandle, writeLatin1, writeUtf8 } from './node-internals.ts';
import type { WheelNode } from './timer-wheel.ts';

const EMPTY = Buffer.alloc(0);

/** Writes below this size are copied into the connection's staging slab; larger ones go by reference. */
export const COPY_LIMIT = 16 * 1024;
const STAGE_SLAB = 16 * 1024;
let discarded = Buffer.alloc(0);

/** Scratch for writes to a closed connection (they are dropped). */
function discardBuffer(n: number): Buffer {
  if (discarded.length < n) discarded = Buffer.allocUnsafe(Math.max(n, 4096));
  return discarded;
}

/** Strings up to this length are copied by a JS loop rather than the native encoder. */
const SHORT_STRING = 64;

// Bits of `Conn.flags`.
const F_OPENED = 1; // the connection was ever open (a failed dial never was)
const F_FROM_LISTENER = 2; // accepted from the loop's listener (counts toward maxConnections)
const F_DIRTY = 4; // has staged bytes, listed for the end-of-turn flush
const F_WOKEN = 8; // a wake() is pending
const F_IN_OWNED = 16; // the inbound buffer is an arena slab of ours (not a lent read)
const F_ABOVE_HIGH = 32; // queued outbound bytes passed the high-water mark
const F_WANT_WRITABLE = 64; // whenWritable() promised an onWritable
const F_USER_PAUSED = 128; // pause() by the handler
const F_READING_PAUSED = 256; // the socket is not being read
const F_SOCKET_QUEUE = 512; // bytes were written through socket.write and may still wait in its queue
const F_LENDING = 1024; // inside the onTraffic turn: views of the inbound buffer may be held
const F_SETTLE_DUE = 2048; // emptied outside a turn: the slab goes back once the current callback returns
const F_TLS = 4096; // the socket is a TLSSocket: one direct write in flight at a time (TLSWrap's rule)
const F_FLUSH_WAITING = 8192; // a flush came while a TLS write was in flight: it runs when that completes
const F_END_DEFERRED = 16384; // close() came while TLS bytes were in flight: the FIN follows them
const F_HELD = 32768; // bytes arrived while reading was paused (TLS decrypts a whole read's records): dispatched at resume
const F_EOF_DEFERRED = 65536; // the peer's end came behind held bytes: onEof waits until the handler saw them

/** What a TLS connection negotiated ({@link Conn.tls}). */
export interface TlsInfo {
  /** `TLSv1.3` or `TLSv1.2`. */
  protocol: string;
  /** The cipher suite's IANA name (for example `TLS_AES_128_GCM_SHA256`). */
  cipher: string;
  /** The server name the client asked for (SNI), or null. */
  servername: string | null;
  /** The ALPN protocol chosen, or null. */
  alpnProtocol: string | null;
  /** Whether the handshake resumed a session (a ticket) instead of a full key exchange. */
  resumed: boolean;
  /**
   * On an accepted connection: whether the client's certificate verified (mutual TLS; false without one).
   * On a dial: whether the server's verified.
   */
  authorized: boolean;
  /** Why the peer's certificate did not verify (OpenSSL's code, e.g. `CERT_HAS_EXPIRED`), or null. */
  authorizationError: string | null;
  /** The peer's certificate (a client certificate on an accepted connection), or null when it sent none. */
  peerCertificate(): PeerCertificate | null;
  /** The session to resume with later (a dial's `tls.session`), or null. */
  session(): Buffer | null;
}

/** @internal Connection states. */
export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSING = 2;
export const CLOSED = 3;

/**
 * One TCP or Unix-socket connection, accepted or dialed, owned by one loop. Every method may be called only
 * from the thread of the loop that owns the connection (`conn.loop`), like every other loop object.
 *
 * Inbound bytes are lent: `peek`/`next` return views valid only until the current callback returns; keep
 * what you need by copying it. Outbound bytes staged during a loop iteration leave in one socket write per
 * connection, once every connection that was ready has been served (or at once with `flush`). Writes of
 * fewer than 16 KiB are copied into a pooled slab; larger buffers are sent by reference, so do not modify a
 * buffer after writing it.
 */
export class Conn<Ctx = unknown> implements WheelNode, WriteOwner {
  /** Loop-unique id (increasing). */
  readonly id: number;
  /** The loop that owns this connection. */
  readonly loop: EventLoop;
  /** Whether this connection was dialed with `loop.dial` rather than accepted. */
  readonly dialed: boolean;
  /** A slot for the handler's per-connection state. */
  context: Ctx | undefined = undefined;
  /**
   * Set by a protocol while a message is in progress; a graceful stop does not close a busy connection until
   * it is idle or the deadline passes.
   */
  busy = false;

  /** @internal */ handler: EventHandler<Ctx>;
  /** @internal */ readonly socket: Socket;
  /** @internal */ state: number;
  /** @internal */ closeError: Error | undefined = undefined;

  /** @internal Loop clock at the last read or write (coarse: the loop refreshes its clock per timer tick). */
  lastActive: number;
  /** @internal Reads plus flushes so far; a graceful stop treats a connection whose count stood still as quiet. */
  activity = 0;
  /** @internal `activity` at the previous shutdown sweep. */
  sweepMark = -1;
  /** Booleans of the connection, one bit each (an idle connection is mostly its fields): see F_*. */
  private flags = 0;

  private peerAddress: string | undefined = undefined;
  private inBuf: Buffer = EMPTY;
  private inStart = 0;
  private inEnd = 0;

  /** The last view `peek`/`next` lent this turn (identity, not `.buffer`, tells it apart: the getter is slow). */
  private lentView: Buffer | null = null;

  private stage: Buffer | null = null;
  private stageStart = 0;
  private stagePos = 0;
  /**
   * What the next flush writes in order (views of slabs and by-reference buffers) and the slabs it uses up,
   * when more than the current staging slab is involved. Lists are borrowed from the loop while bytes wait,
   * so an idle connection holds none.
   */
  private segments: Uint8Array[] | null = null;
  private slabs: Buffer[] | null = null;
  private staged = 0;
  /** Bytes of direct handle writes libuv still holds (the socket's `writableLength` does not see them). */
  private queuedDirect = 0;
  /** Slabs of direct writes libuv still holds, one group per write, oldest first. */
  private held: Buffer[][] | null = null;

  private afterWriteBound: (() => void) | null = null;

  private deadlineAt = 0;
  /** @internal */ expireAt = 0;
  /** The socket's JS queue and libuv's queue when the linger time was last armed (see `lingerProgress`). */
  private lingerQueued = 0;
  private lingerInLibuv = 0;

  /** @internal */ wheelAt = 0;
  /** @internal */ wheelPrev: WheelNode | null = null;
  /** @internal */ wheelNext: WheelNode | null = null;
  /** @internal */ wheelSlot = -1;

  /**
   * What TLS negotiated, or null on a plain connection. A fresh object per call: read it once per
   * connection (in `onOpen`), not per request.
   */
  get tls(): TlsInfo | null {
    const s = this.socket;
    if (!(s instanceof TLSSocket)) return null;
    const cipher = s.getCipher();
    return {
      protocol: s.getProtocol() ?? '',
      cipher: cipher?.standardName ?? cipher?.name ?? '',
      servername: typeof s.servername === 'string' && s.servername !== '' ? s.servername.toLowerCase() : null,
      alpnProtocol: typeof s.alpnProtocol === 'string' ? s.alpnProtocol : null,
      resumed: s.isSessionReused(),
      authorized: s.authorized,
      authorizationError:
        s.authorizationError === undefined || s.authorizationError === null
          ? null
          : String(s.authorizationError),
      peerCertificate: () => {
        const cert = s.getPeerCertificate();
        return cert === null || Object.keys(cert).length === 0 ? null : cert;
      },
      session: () => s.getSession() ?? null,
    };
  }

  /** Whether the connection runs over TLS. Cheap (a flag): fine per request. */
  get secure(): boolean {
    return (this.flags & F_TLS) !== 0;
  }

  /** The protocol ALPN chose (`h2`, `http/1.1`...), or null (plain TCP, or no ALPN). Cheap: no object made. */
  get alpnProtocol(): string | null {
    const s = this.socket;
    return s instanceof TLSSocket && typeof s.alpnProtocol === 'string' ? s.alpnProtocol : null;
  }

  /** @internal Whether the connection was ever open (a failed dial never was). */
  get opened(): boolean {
    return (this.flags & F_OPENED) !== 0;
  }
  set opened(on: boolean) {
    this.flags = on ? this.flags | F_OPENED : this.flags & ~F_OPENED;
  }
  /** @internal Accepted from the loop's listener (counts toward `maxConnections`). */
  get fromListener(): boolean {
    return (this.flags & F_FROM_LISTENER) !== 0;
  }
  set fromListener(on: boolean) {
    this.flags = on ? this.flags | F_FROM_LISTENER : this.flags & ~F_FROM_LISTENER;
  }
  /** @internal Listed for the end-of-turn flush. */
  get dirty(): boolean {
    return (this.flags & F_DIRTY) !== 0;
  }
  set dirty(on: boolean) {
    this.flags = on ? this.flags | F_DIRTY : this.flags & ~F_DIRTY;
  }
  /** @internal A wake() is pending. */
  get woken(): boolean {
    return (this.flags & F_WOKEN) !== 0;
  }
  set woken(on: boolean) {
    this.flags = on ? this.flags | F_WOKEN : this.flags & ~F_WOKEN;
  }

  /** @internal Use `loop.dial` or the loop's accept path; never constructed by handlers. */
  constructor(id: number, loop: EventLoop, socket: Socket, handler: EventHandler<Ctx>, dialed: boolean) {
    this.id = id;
    this.loop = loop;
    this.socket = socket;
    this.handler = handler;
    this.dialed = dialed;
    this.state = dialed ? CONNECTING : OPEN;
    if (!dialed) this.flags = F_OPENED;
    if (socket instanceof TLSSocket) this.flags |= F_TLS;
    this.lastActive = loop.clock;
  }

  // ---- addresses ------------------------------------------------------------------------------------

  /** Local address (IP, or the socket path for Unix sockets). */
  get localAddress(): string {
    return this.socket.localAddress ?? this.loop.address;
  }
  /** Local port (0 for Unix sockets). */
  get localPort(): number {
    return this.socket.localPort ?? 0;
  }
  /** Peer IP address ('' for Unix sockets or a closed socket). */
  get remoteAddress(): string {
    // Cached: proxies ask on every request, and Node's getter goes through several calls each time.
    let address = this.peerAddress;
    if (address === undefined) {
      address = this.socket.remoteAddress;
      if (address === undefined) return '';
      this.peerAddress = address;
    }
    return address;
  }
  /** Peer port (0 for Unix sockets). */
  get remotePort(): number {
    return this.socket.remotePort ?? 0;
  }

  // ---- inbound -------------------------------------------------------------------------------------

  /** Bytes received and not yet consumed. */
  get inboundBuffered(): number {
    return this.inEnd - this.inStart;
  }

  /**
   * The buffer holding the unconsumed inbound bytes, at `[offset, offset + inboundBuffered)`. For codecs that
   * parse in place without creating views; the same lending rule as `peek` applies.
   */
  get buffer(): Buffer {
    return this.inBuf;
  }

  /** Where the unconsumed inbound bytes start in {@link buffer}. */
  get offset(): number {
    return this.inStart;
  }

  /** A view of the next `n` unconsumed bytes (fewer if fewer are buffered; all of them when `n` < 0). */
  peek(n = -1): Buffer {
    const avail = this.inEnd - this.inStart;
    const len = n < 0 || n > avail ? avail : n;
    const view = this.inBuf.subarray(this.inStart, this.inStart + len);
    this.lentView = view;
    return view;
  }

  /** Like {@link peek}, and consumes what it returns. */
  next(n = -1): Buffer {
    const buf = this.inBuf;
    if (this.inStart === 0 && (n < 0 || n >= buf.length) && this.inEnd === buf.length) {
      // Everything, from the start of the buffer: the buffer itself is the view.
      this.inStart = this.inEnd;
      this.lentView = buf;
      return buf;
    }
    const view = this.peek(n);
    this.inStart += view.length;
    return view;
  }

  /** Consumes `n` bytes (all when `n` < 0) without looking; returns how many were consumed. */
  discard(n = -1): number {
    const avail = this.inEnd - this.inStart;
    const len = n < 0 || n > avail ? avail : n;
    this.inStart += len;
    if (len === avail && len !== 0) this.emptied();
    return len;
  }

  /**
   * Everything buffered was consumed outside a traffic turn (a codec reading on later, from a timer or a
   * promise). The callback doing it may still hold views of the slab (a `peek` before the `discard`, a head
   * parsed in place), so the slab goes back when the loop's current phase ends, not at once, and not only
   * when the next read comes (an idle connection then holds none).
   */
  private emptied(): void {
    if ((this.flags & (F_IN_OWNED | F_LENDING | F_SETTLE_DUE)) !== F_IN_OWNED) return;
    this.flags |= F_SETTLE_DUE;
    this.loop.scheduleSettle(this);
  }

  /** @internal The callback that emptied the inbound slab outside a turn has returned (see `emptied`). */
  settleEmptied(): void {
    if ((this.flags & F_SETTLE_DUE) === 0) return;
    this.flags &= ~F_SETTLE_DUE;
    if ((this.flags & (F_IN_OWNED | F_LENDING)) === F_IN_OWNED && this.inEnd === this.inStart)
      this.releaseInbound();
  }

  /** @internal The loop runs `onTraffic` (views of the inbound buffer are lent until `settleInbound`). */
  beginTraffic(): void {
    this.flags |= F_LENDING;
  }

  /**
   * @internal Takes `buf[0, n)` from the socket: lends it, or appends it to the owned leftover. `buf` is
   * usually the loop's shared read buffer, which the next read overwrites: `settleInbound` copies what the
   * turn leaves unconsumed.
   */
  receive(buf: Buffer, n: number): boolean {
    this.loop.stats.bytesIn += n;
    this.lastActive = this.loop.clock;
    this.activity++;
    const left = this.inEnd - this.inStart;
    if (left === 0) {
      if ((this.flags & F_IN_OWNED) !== 0) this.releaseInbound();
      this.inBuf = buf;
      this.inStart = 0;
      this.inEnd = n;
      return true;
    }
    const need = left + n;
    if (need > this.loop.options.readBufferCap) {
      this.destroy(
        netloomError(
          'ERR_NETLOOM_INBOUND_OVERFLOW',
          `connection ${this.id} holds ${need} unconsumed inbound bytes, over readBufferCap ${this.loop.options.readBufferCap}`,
        ),
      );
      return false;
    }
    const held = this.inBuf;
    if ((this.flags & F_IN_OWNED) !== 0 && held.length - this.inEnd >= n) {
      buf.copy(held, this.inEnd, 0, n);
      this.inEnd += n;
    } else if ((this.flags & F_IN_OWNED) !== 0 && held.length >= need) {
      held.copyWithin(0, this.inStart, this.inEnd);
      buf.copy(held, left, 0, n);
      this.inStart = 0;
      this.inEnd = need;
    } else {
      const grown = this.loop.arena.take(need);
      held.copy(grown, 0, this.inStart, this.inEnd);
      buf.copy(grown, left, 0, n);
      if ((this.flags & F_IN_OWNED) !== 0) this.loop.arena.give(held);
      this.inBuf = grown;
      this.flags |= F_IN_OWNED;
      this.inStart = 0;
      this.inEnd = need;
    }
    return true;
  }

  /** @internal After a traffic turn: copy a lent leftover into the arena, or return an emptied slab. */
  settleInbound(): void {
    this.flags &= ~F_LENDING;
    this.lentView = null;
    const left = this.inEnd - this.inStart;
    if (left === 0) {
      if ((this.flags & F_IN_OWNED) !== 0) this.releaseInbound();
      else if (this.inBuf !== EMPTY) {
        this.inBuf = EMPTY;
        this.inStart = this.inEnd = 0;
      }
    } else if ((this.flags & F_IN_OWNED) === 0) {
      const slab = this.loop.arena.take(left);
      this.inBuf.copy(slab, 0, this.inStart, this.inEnd);
      this.inBuf = slab;
      this.flags |= F_IN_OWNED;
      this.inStart = 0;
      this.inEnd = left;
    }
  }

  private releaseInbound(): void {
    this.loop.arena.give(this.inBuf);
    this.inBuf = EMPTY;
    this.lentView = null; // a view of a slab given back is never written by reference
    this.flags &= ~F_IN_OWNED;
    this.inStart = this.inEnd = 0;
  }

  // ---- outbound ------------------------------------------------------------------------------------

  /** Bytes written and not yet taken by the kernel (staged this turn plus queued in the socket). */
  get outboundBuffered(): number {
    return this.staged + this.pendingOut();
  }

  /** Bytes handed to the socket and not yet taken by the kernel. */
  private pendingOut(): number {
    return this.socket.writableLength + this.queuedDirect;
  }

  /**
   * Queues bytes (a string is UTF-8 encoded). They go out with the turn's single socket write. Writes after
   * `close` or on a closed connection are dropped; check `closed` when it matters.
   */
  write(data: Uint8Array | string): void {
    if (this.state >= CLOSING) return;
    if (typeof data === 'string') {
      this.writeString(data, false);
      return;
    }
    const n = data.byteLength;
    if (n === 0) return;
    // Bytes of a chunk Node allocated for this read alone go by reference: nobody reuses that memory. (The
    // loop's shared read buffer is engine memory, so `arena.owns` below copies views of it.)
    const lent =
      data === this.lentView && (this.flags & F_IN_OWNED) === 0 && this.inBuf !== this.loop.readBuffer;
    if (n < COPY_LIMIT && !lent) {
      const stage = this.room(n);
      stage.set(data, this.stagePos);
      this.stagePos += n;
    } else {
      this.cutSegment();
      if (!lent && this.loop.arena.owns(data)) {
        // An engine-owned view (a lent inbound slab) would be reused under the socket: copy it.
        const copy = this.loop.arena.take(n);
        copy.set(data);
        this.slabList().push(copy);
        this.segmentList().push(copy.subarray(0, n));
      } else {
        this.segmentList().push(data);
      }
    }
    this.staged += n;
    if ((this.flags & F_DIRTY) === 0) this.loop.markDirty(this);
  }

  /** Queues a string whose characters are all below U+0100, one byte each (HTTP header text). */
  writeLatin1(text: string): void {
    if (this.state >= CLOSING) return;
    this.writeString(text, true);
  }

  /**
   * Low-level output for codecs that serialize in place: returns the staging buffer with at least `n` free
   * bytes from {@link reservedAt}. Write there, then {@link commit} the end offset. Nothing is sent (or kept)
   * without the commit.
   */
  reserve(n: number): Buffer {
    if (this.state >= CLOSING) {
      // Nothing will be committed: lend a throwaway buffer rather than an arena slab nobody returns.
      this.stagePos = 0;
      return discardBuffer(n);
    }
    return this.room(n);
  }

  /** Where the bytes of the last {@link reserve} begin. */
  get reservedAt(): number {
    return this.stagePos;
  }

  /** Keeps the reserved bytes up to offset `end` (exclusive) for the turn's write. */
  commit(end: number): void {
    if (this.state >= CLOSING) return;
    const n = end - this.stagePos;
    this.stagePos = end;
    this.staged += n;
    if ((this.flags & F_DIRTY) === 0) this.loop.markDirty(this);
  }

  /**
   * Queues bytes by reference, not copied: for a buffer the caller will not modify again (a frame built
   * once and sent to many connections), so none of them stages a copy. Memory the engine lent (views from
   * `peek` or `next`) is copied as by {@link write}: the engine reuses it. Loop thread only.
   */
  writeShared(data: Uint8Array): void {
    if (this.state >= CLOSING) return;
    const n = data.byteLength;
    if (n === 0) return;
    if (this.loop.arena.owns(data)) {
      this.write(data);
      return;
    }
    this.cutSegment();
    this.segmentList().push(data);
    this.staged += n;
    if ((this.flags & F_DIRTY) === 0) this.loop.markDirty(this);
  }

  /** Queues several chunks in order; they leave in the same socket write. */
  writev(chunks: readonly (Uint8Array | string)[]): void {
    for (let i = 0; i < chunks.length; i++) this.write(chunks[i]!);
  }

  private writeString(text: string, latin1: boolean): void {
    const worst = latin1 ? text.length : text.length * 3;
    if (worst === 0) return;
    if (text.length >= COPY_LIMIT) {
      // At least COPY_LIMIT bytes: encoded once into a buffer of its own, which then goes by reference.
      this.write(Buffer.from(text, latin1 ? 'latin1' : 'utf8'));
      return;
    }
    // Encoded once, straight into a staging slab with room for the worst case (never encoded, then copied).
    const stage = this.room(worst);
    const pos = this.stagePos;
    let n = 0;
    if (text.length <= SHORT_STRING) {
      // Short text: a byte loop beats the call into the native encoder (falls back at the first non-ASCII).
      const len = text.length;
      for (; n < len; n++) {
        const c = text.charCodeAt(n);
        if (c > 0x7f) break;
        stage[pos + n] = c;
      }
      if (n < len) n = latin1 ? writeLatin1(stage, text, pos) : writeUtf8(stage, text, pos);
    } else {
      n = latin1 ? writeLatin1(stage, text, pos) : writeUtf8(stage, text, pos);
    }
    this.stagePos += n;
    this.staged += n;
    if ((this.flags & F_DIRTY) === 0) this.loop.markDirty(this);
  }

  /** Ensures the staging slab has `n` free bytes. */
  private room(n: number): Buffer {
    let stage = this.stage;
    if (stage === null) {
      stage = this.stage = this.loop.arena.take(Math.max(n, STAGE_SLAB));
      this.stageStart = this.stagePos = 0;
    } else if (stage.length - this.stagePos < n) {
      this.cutSegment();
      this.slabList().push(stage);
      stage = this.stage = this.loop.arena.take(Math.max(n, STAGE_SLAB));
      this.stageStart = this.stagePos = 0;
    }
    return stage;
  }

  private cutSegment(): void {
    const stage = this.stage;
    if (stage !== null && this.stagePos > this.stageStart) {
      this.segmentList().push(stage.subarray(this.stageStart, this.stagePos));
      this.stageStart = this.stagePos;
    }
  }

  private segmentList(): Uint8Array[] {
    if (this.segments === null) this.segments = this.loop.borrowList() as Uint8Array[];
    return this.segments;
  }

  private slabList(): Buffer[] {
    if (this.slabs === null) this.slabs = this.loop.borrowList() as Buffer[];
    return this.slabs;
  }

  /** Gives the (emptied) lists back to the loop. */
  private returnLists(): void {
    if (this.segments !== null) {
      this.loop.returnList(this.segments);
      this.segments = null;
    }
    if (this.slabs !== null) {
      this.loop.returnList(this.slabs);
      this.slabs = null;
    }
  }

  /**
   * Hands staged bytes to the socket now. The engine calls it after every callback turn, so handlers need it
   * only to push bytes out mid-turn.
   */
  flush(): void {
    this.flags &= ~F_DIRTY;
    const n = this.staged;
    if (n === 0 || this.state === CLOSED) return;
    this.staged = 0;
    const socket = this.socket;
    const loop = this.loop;
    loop.stats.writes++;
    const writer = loop.writer;
    // Straight to the handle unless a dial still connects or Node's own queue may hold earlier bytes.
    let handle = null;
    if (writer !== null && this.state !== CONNECTING) {
      if ((this.flags & F_SOCKET_QUEUE) === 0) handle = socketHandle(socket);
      else if (socket.writableLength === 0) {
        this.flags &= ~F_SOCKET_QUEUE;
        handle = socketHandle(socket);
      }
    }
    if (handle !== null && (this.flags & F_TLS) !== 0 && this.queuedDirect > 0) {
      // TLSWrap takes one write at a time (a second one aborts the process): these bytes stay staged and
      // go, with whatever joins them, when the write in flight completes (writeDone).
      this.staged = n;
      loop.stats.writes--;
      this.flags |= F_FLUSH_WAITING;
      const pending = n + this.queuedDirect;
      if (pending > loop.options.highWaterMark) this.pressure(pending);
      return;
    }
    if (handle !== null) {
      // Straight to the handle: nothing of ours waits in the socket's own queue, so order is kept.
      let outcome: number;
      if (this.segments === null) {
        outcome = writer!.write(handle, this.stage!.subarray(this.stageStart, this.stagePos), this);
      } else {
        this.cutSegment();
        const segments = this.segments;
        outcome =
          segments.length === 1
            ? writer!.write(handle, segments[0]!, this)
            : writer!.writev(handle, segments, n, this);
        while (segments.pop() !== undefined);
      }
      if (outcome === QUEUED) {
        this.queuedDirect += n;
        // libuv holds these slabs until the write completes: they go back to the arena then (writeDone).
        this.holdSlabs();
      } else if (outcome !== WRITTEN) {
        this.afterFlush(n, 1, false); // the slabs go to the collector: the connection is going
        this.destroyForWrite(outcome);
        return;
      }
      // Taken at once by the kernel, or held until writeDone: either way nothing here is still referenced.
      this.afterFlush(n, this.pendingOut(), true);
      return;
    }
    this.writeToSocket(n, socket, loop.options);
    this.flags |= F_SOCKET_QUEUE;
    const pending = this.pendingOut();
    // The socket keeps what it has not written yet: those slabs are left to the collector.
    this.afterFlush(n, pending, pending === 0);
  }

  /** Moves the slabs of a write libuv queued into `held`, in write order, until {@link writeDone}. */
  private holdSlabs(): void {
    const group: Buffer[] = [];
    if (this.stage !== null) {
      group.push(this.stage);
      this.stage = null;
      this.stageStart = this.stagePos = 0;
    }
    const slabs = this.slabs;
    if (slabs !== null) {
      let slab = slabs.pop();
      while (slab !== undefined) {
        group.push(slab);
        slab = slabs.pop();
      }
    }
    if (this.held === null) this.held = [];
    this.held.push(group);
  }

  /** The socket's own path (dials still connecting, or bytes already in its queue). */
  private writeToSocket(n: number, socket: Socket, opts: EventLoop['options']): void {
    const before = this.pendingOut();
    // Invariant: whenever more than the low-water mark is queued, the last write carries the completion
    // callback, so onWritable is never owed without a write left to trigger it.
    const cb =
      (this.flags & F_ABOVE_HIGH) !== 0 ||
      (this.flags & F_WANT_WRITABLE) !== 0 ||
      before + n > opts.lowWaterMark
        ? this.afterWrite()
        : undefined;
    const segments = this.segments;
    if (segments === null) {
      const stage = this.stage!;
      const view = stage.subarray(this.stageStart, this.stagePos);
      if (cb === undefined) socket.write(view);
      else socket.write(view, cb);
    } else if (segments.length === 1 && this.stagePos === this.stageStart) {
      if (cb === undefined) socket.write(segments[0]!);
      else socket.write(segments[0]!, cb);
      segments.pop();
    } else {
      this.cutSegment();
      socket.cork();
      const last = segments.length - 1;
      for (let i = 0; i < last; i++) socket.write(segments[i]!);
      if (cb === undefined) socket.write(segments[last]!);
      else socket.write(segments[last]!, cb);
      socket.uncork();
      // pop, not `length = 0`: truncating shrinks the backing store and the next push reallocates it.
      while (segments.pop() !== undefined);
    }
  }

  /**
   * Bookkeeping after `n` bytes went to the socket, `pending` of all handed bytes not yet sent. The staged
   * slabs go back to the arena when `free` (nothing references them any more), else to the collector.
   */
  private afterFlush(n: number, pending: number, free: boolean): void {
    this.loop.stats.bytesOut += n;
    this.lastActive = this.loop.clock;
    this.activity++;
    const arena = this.loop.arena;
    if (this.stage !== null) {
      if (free) arena.give(this.stage);
      else arena.abandon();
      this.stage = null;
      this.stageStart = this.stagePos = 0;
    }
    const slabs = this.slabs;
    if (slabs !== null) {
      let slab = slabs.pop();
      while (slab !== undefined) {
        if (free) arena.give(slab);
        else arena.abandon();
        slab = slabs.pop();
      }
    }
    this.returnLists();
    if (pending > this.loop.options.highWaterMark) this.pressure(pending);
    else if (pending === 0 && ((this.flags & F_ABOVE_HIGH) !== 0 || (this.flags & F_WANT_WRITABLE) !== 0))
      process.nextTick(this.afterWrite());
  }

  /** @internal A direct write libuv had queued is done (libuv completes a handle's writes in order). */
  writeDone(bytes: number, status: number): void {
    this.queuedDirect -= bytes;
    const group = this.held?.shift();
    if (group !== undefined) for (const slab of group) this.loop.arena.give(slab);
    if (this.state === CLOSED) return;
    if (status < 0) {
      this.destroyForWrite(status);
      return;
    }
    if ((this.flags & F_FLUSH_WAITING) !== 0) {
      this.flags &= ~F_FLUSH_WAITING;
      this.flush();
      if (this.state === CLOSED) return;
    }
    if ((this.flags & F_END_DEFERRED) !== 0 && this.queuedDirect === 0 && this.staged === 0) {
      this.flags &= ~F_END_DEFERRED;
      this.socket.end();
    }
    this.onWritten();
  }

  /** A failed write ends the connection with the error Node's own write path would report. */
  private destroyForWrite(errno: number): void {
    this.destroy(writeError(errno));
  }

  private pressure(pending: number): void {
    if (pending > this.loop.options.writeBufferCap) {
      this.destroy(
        netloomError(
          'ERR_NETLOOM_OUTBOUND_OVERFLOW',
          `connection ${this.id} has ${pending} outbound bytes queued, over writeBufferCap ${this.loop.options.writeBufferCap}`,
        ),
      );
      return;
    }
    if ((this.flags & F_ABOVE_HIGH) === 0) {
      this.flags |= F_ABOVE_HIGH;
      this.updateReading();
    }
  }

  private afterWrite(): () => void {
    if (this.afterWriteBound === null) this.afterWriteBound = () => this.onWritten();
    return this.afterWriteBound;
  }

  private onWritten(): void {
    if (((this.flags & F_ABOVE_HIGH) === 0 && (this.flags & F_WANT_WRITABLE) === 0) || this.state === CLOSED)
      return;
    if (this.pendingOut() <= this.loop.options.lowWaterMark) {
      this.flags &= ~F_WANT_WRITABLE;
      if ((this.flags & F_ABOVE_HIGH) !== 0) {
        this.flags &= ~F_ABOVE_HIGH;
        this.updateReading();
      }
      this.loop.dispatchWritable(this);
    }
  }

  /**
   * For streaming writers: flushes, then returns true if queued outbound bytes are at or below the low-water
   * mark; otherwise returns false and `onWritable` runs once they are.
   */
  whenWritable(): boolean {
    this.flush();
    if (this.state >= CLOSING || this.pendingOut() <= this.loop.options.lowWaterMark) return true;
    this.flags |= F_WANT_WRITABLE;
    return false;
  }

  // ---- flow control --------------------------------------------------------------------------------

  /** Stops reading from this connection until {@link resume} (for flow control across connections). */
  pause(): void {
    this.flags |= F_USER_PAUSED;
    this.updateReading();
  }

  /** Undoes {@link pause}. Reading stays off while outbound bytes are above the high-water mark. */
  resume(): void {
    this.flags &= ~F_USER_PAUSED;
    this.updateReading();
  }

  /**
   * Stop reading while outbound bytes are above the high-water mark (the default: what bounds memory for a
   * peer that sends but does not read). A client connection whose reads are answers to its own writes (an
   * upstream a proxy forwards to) sets it false: its answer must stay readable, the proxy bounds what it writes.
   */
  pauseOnBackpressure = true;

  /** Whether the engine is reading from this connection (not paused by the handler or by backpressure). */
  get reading(): boolean {
    return (this.flags & F_READING_PAUSED) === 0;
  }

  /** @internal */
  updateReading(): void {
    // A dial still connecting wants reading too: nothing re-evaluates this when it connects.
    const want =
      this.state <= OPEN &&
      (this.flags & F_USER_PAUSED) === 0 &&
      ((this.flags & F_ABOVE_HIGH) === 0 || !this.pauseOnBackpressure);
    if (want && (this.flags & F_READING_PAUSED) !== 0) {
      this.flags &= ~F_READING_PAUSED;
      this.socket.resume();
      if ((this.flags & (F_HELD | F_EOF_DEFERRED)) !== 0) {
        this.flags &= ~F_HELD;
        this.wake(); // the handler has not seen what came in while paused (nor the end behind it)
      }
    } else if (!want && (this.flags & F_READING_PAUSED) === 0 && this.state !== CLOSING) {
      this.flags |= F_READING_PAUSED;
      this.socket.pause();
    }
  }

  /**
   * @internal Bytes came in while reading was paused (a TLS read decrypts every record it holds, after a
   * pause too): they are kept, copied out of the shared buffer, and `onTraffic` sees them at `resume`.
   */
  holdWhilePaused(): void {
    this.settleInbound();
    this.flags |= F_HELD;
  }

  /** @internal Whether bytes held while paused still wait for the handler (the peer's end must wait too). */
  get holding(): boolean {
    return (
      (this.flags & F_HELD) !== 0 || ((this.flags & F_READING_PAUSED) !== 0 && this.inEnd > this.inStart)
    );
  }

  /** @internal The peer ended behind held bytes: its end is delivered once they were offered. */
  deferEof(): void {
    this.flags |= F_EOF_DEFERRED;
  }

  /** @internal Whether an end waits (see {@link deferEof}). */
  get eofDeferred(): boolean {
    return (this.flags & F_EOF_DEFERRED) !== 0;
  }

  /** @internal Takes the deferred end, once reading runs again. */
  takeDeferredEof(): boolean {
    if ((this.flags & F_EOF_DEFERRED) === 0 || (this.flags & F_READING_PAUSED) !== 0) return false;
    this.flags &= ~F_EOF_DEFERRED;
    return true;
  }

  /**
   * Calls `onTraffic` again soon (in this loop turn's check phase) even if no new bytes arrive: for a codec
   * that left bytes unconsumed while it waited for something else (gnet's `Wake`).
   */
  wake(): void {
    if (this.state === OPEN && (this.flags & F_WOKEN) === 0) {
      this.flags |= F_WOKEN;
      this.loop.scheduleWake(this);
    }
  }

  /**
   * Delivers the peer's end again, to the handler the connection was handed to: a codec that saw the FIN
   * before it switched protocols (an upgrade answered after the client stopped sending) passes it on, so
   * the new handler's `onEof` runs once it has read what came before. Loop thread only.
   */
  replayEof(): void {
    if (this.state !== OPEN) return;
    this.flags |= F_EOF_DEFERRED;
    this.wake();
  }

  /**
   * Hands the connection to another handler (a protocol upgrade). The new handler's `onOpen` runs at once,
   * under the loop's error handling like every callback (a throw destroys the connection with
   * `ERR_NETLOOM_HANDLER`, a returned `Action` applies); bytes still buffered are then offered to its
   * `onTraffic` soon after. Loop thread only.
   */
  setHandler(handler: EventHandler<Ctx>): void {
    this.handler = handler;
    if (this.state !== OPEN) return;
    this.loop.dispatchOpen(this as Conn);
    if (this.state === OPEN && this.inEnd > this.inStart) this.wake();
  }

  // ---- timers --------------------------------------------------------------------------------------

  /**
   * Arms a deadline `ms` milliseconds from now (0 disarms it). When it passes, the handler's `onDeadline`
   * runs, or without one the connection is destroyed with `ERR_NETLOOM_DEADLINE`. Resolution is the loop's
   * `timerResolution`.
   */
  setDeadline(ms: number): void {
    this.deadlineAt = ms > 0 ? this.loop.now() + ms : 0;
    this.loop.rearm(this);
  }

  /** @internal The earliest time something is due on this connection, or 0. */
  nextDue(): number {
    const opts = this.loop.options;
    // A deadline only matters while open; a closing connection has its linger time instead.
    let at = this.state === OPEN ? this.deadlineAt : 0;
    if (this.expireAt !== 0 && (at === 0 || this.expireAt < at)) at = this.expireAt;
    if (this.state === OPEN && opts.idleTimeout > 0) {
      const idleAt = this.lastActive + opts.idleTimeout;
      if (at === 0 || idleAt < at) at = idleAt;
    }
    return at;
  }

  /** @internal Runs what is due at `now`. */
  expire(now: number): void {
    if (this.state === CLOSED) return;
    if (this.expireAt !== 0 && now >= this.expireAt) {
      if (this.state === CLOSING) {
        // Linger measures time without progress: a slow reader still taking our last bytes is not cut off.
        if (this.lingerProgress()) {
          this.expireAt = Date.now() + this.loop.options.lingerTimeout;
          this.loop.rearm(this);
          return;
        }
      }
      this.expireAt = 0;
      if (this.state === CONNECTING) {
        this.destroy(netloomError('ERR_NETLOOM_DIAL_TIMEOUT', `dial timed out on connection ${this.id}`));
      } else {
        this.destroy();
      }
      return;
    }
    if (this.state !== OPEN) {
      this.loop.rearm(this);
      return;
    }
    if (this.deadlineAt !== 0 && now >= this.deadlineAt) {
      this.deadlineAt = 0;
      this.loop.dispatchDeadline(this);
    } else if (this.loop.options.idleTimeout > 0 && now - this.lastActive >= this.loop.options.idleTimeout) {
      this.close(
        netloomError(
          'ERR_NETLOOM_IDLE_TIMEOUT',
          `connection ${this.id} idle for ${this.loop.options.idleTimeout} ms`,
        ),
      );
    }
    this.loop.rearm(this);
  }

  // ---- closing -------------------------------------------------------------------------------------

  /** Whether the connection is closing or closed (writes are dropped). */
  get closed(): boolean {
    return this.state >= CLOSING;
  }

  /**
   * Closes gracefully: pending writes go out, then FIN; the engine reads and discards what the peer still
   * sends (so the kernel does not reset the connection before the peer read our last bytes) until the peer
   * closes, or `lingerTimeout` passes with no progress on the pending writes. `err`, if given, is what
   * `onClose` receives.
   */
  close(err?: Error): void {
    if (this.state >= CLOSING) return;
    if (err !== undefined && this.closeError === undefined) this.closeError = err;
    if (this.state === CONNECTING) {
      this.destroy();
      return;
    }
    this.flush();
    if (this.state === CLOSED) return; // the flush failed and destroyed the connection
    this.state = CLOSING;
    this.inStart = this.inEnd;
    this.settleInbound();
    // Keep reading (and discarding) so the peer's FIN is seen; linger bounds how long.
    if ((this.flags & F_READING_PAUSED) !== 0) {
      this.flags &= ~F_READING_PAUSED;
      this.socket.resume();
    }
    // TLSWrap shuts down at once, ahead of a write it still holds: the FIN (and close_notify) wait for it.
    if ((this.flags & F_TLS) !== 0 && (this.queuedDirect > 0 || this.staged > 0))
      this.flags |= F_END_DEFERRED;
    else this.socket.end();
    this.lingerProgress();
    this.expireAt = Date.now() + this.loop.options.lingerTimeout;
    this.loop.rearm(this);
  }

  /**
   * Whether bytes are still unsent and some were sent since the last call, which records the new marks.
   * Counted as libuv drains them, so a large write in progress shows progress before it completes. The two
   * queues are compared in order, not summed: the socket's JS queue (`writableLength`) only shrinks once
   * closing, and when it does it may hand libuv a chunk that was waiting behind the finished one, which
   * `writeQueueSize` then counts a second time (a sum could grow although bytes went out).
   */
  private lingerProgress(): boolean {
    const size = handleQueueSize(this.socket);
    const queued = this.socket.writableLength;
    const inLibuv = size >= 0 ? size : this.queuedDirect;
    const progress =
      queued + inLibuv > 0 &&
      (queued < this.lingerQueued || (queued === this.lingerQueued && inLibuv < this.lingerInLibuv));
    this.lingerQueued = queued;
    this.lingerInLibuv = inLibuv;
    return progress;
  }

  /** Closes at once, discarding pending writes. `err`, if given, is what `onClose` receives. */
  destroy(err?: Error | NetloomError): void {
    if (this.state === CLOSED) return;
    if (err !== undefined && this.closeError === undefined) this.closeError = err;
    this.state = CLOSED;
    this.staged = 0;
    this.socket.destroy();
  }

  /** @internal Releases arena memory once the socket is gone. */
  release(): void {
    this.state = CLOSED;
    if ((this.flags & F_IN_OWNED) !== 0) this.releaseInbound();
    else this.inBuf = EMPTY;
    const arena = this.loop.arena;
    // Staged slabs were never handed to the socket (a flush clears them), so they can be reused.
    if (this.stage !== null) arena.give(this.stage);
    if (this.slabs !== null) for (const slab of this.slabs) arena.give(slab);
    this.stage = null;
    if (this.slabs !== null) this.slabs.length = 0;
    if (this.segments !== null) this.segments.length = 0;
    this.returnLists();
    this.staged = 0;
  }
}
