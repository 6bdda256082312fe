import type { DialTlsOptions, EventLoop, LoopTimer } from '../core/index.ts';
import { ClientConnection, clientHandler } from '../protocols/http1/index.ts';
import type { Http2ClientStream } from '../protocols/http2/index.ts';

/**
 * What a pool hands a requester for one exchange: an HTTP/1.1 connection (one exchange at a time), or a
 * stream reserved on an HTTP/2 connection. Both send a request, stream its body, and hand the response to
 * a sink the same way (`request`, `writeBody`, `endBody`, `abort`, `resumeResponse`, `setDeadline`).
 */
export type UpstreamExchange = ClientConnection | Http2ClientStream;

/** The pool of one target: HTTP/1.1 keep-alive connections, or multiplexed HTTP/2 ones. */
export interface UpstreamPool {
  readonly address: string;
  /** TLS for every connection, or undefined for plain TCP. */
  readonly tls: DialTlsOptions | undefined;
  options: PoolOptions;
  /** Hands `requester` an exchange now or later (or an error); `fresh`: on a connection not used before. */
  acquire(requester: PoolRequester, fresh?: boolean): void;
  /** Forgets a requester still waiting; true if it was. */
  withdraw(requester: PoolRequester): boolean;
  /** Takes back an exchange after its response (HTTP/1.1), or one never used. */
  release(client: UpstreamExchange): void;
  /**
   * The exchange's connection switched protocols (a WebSocket upgrade) and left the pool: it no longer
   * counts against `maxConnections`, and whoever took it closes it. HTTP/1.1 pools only.
   */
  detach(client: UpstreamExchange): void;
  close(): void;
  stats(): PoolStats;
}

/** Pool settings of one upstream (see the `pool` section of the configuration). */
export interface PoolOptions {
  maxConnections: number;
  maxIdle: number;
  idleTimeout: number;
  connectTimeout: number;
  queueTimeout: number;
  maxQueue: number;
}

/** Who asked for a connection: told once, either way. */
export interface PoolRequester {
  /** `reused`: the connection carried a request before (it may have been closed by the upstream meanwhile). */
  onConnection(client: UpstreamExchange, reused: boolean): void;
  onPoolError(err: PoolError): void;
}

/** Why a connection could not be had: the dial failed or timed out, or the pool's queue is full or too slow. */
export class PoolError extends Error {
  /** `closed`: the pool closed (its target left the configuration) while the requester waited in its queue. */
  readonly kind: 'connect' | 'connect-timeout' | 'queue' | 'closed';
  constructor(kind: 'connect' | 'connect-timeout' | 'queue' | 'closed', message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'PoolError';
    this.kind = kind;
  }
}

/** Counters of one pool, for the admin endpoint. */
export interface PoolStats {
  address: string;
  open: number;
  idle: number;
  waiting: number;
  created: number;
  reused: number;
  failed: number;
  /** Requests answered 503 at once because the queue was full. */
  overflowed: number;
}

/** Idle time an upstream's `Keep-Alive: timeout=N` leaves us: a margin below N seconds. */
const KEEP_ALIVE_MARGIN_MS = 500;

/**
 * Keep-alive connections to one target, owned by one loop (pools are never shared across threads). Idle
 * connections are reused most-recent first; at `maxConnections` requesters wait in order (a ring buffer:
 * O(1) both ways) for up to `queueTimeout`, at most `maxQueue` of them (more are refused at once). An idle
 * connection closes after `idleTimeout`, or sooner when its upstream said it keeps connections for less
 * (`Keep-Alive: timeout=N`), or beyond `maxIdle`.
 */
export class TargetPool implements UpstreamPool {
  /** Where connections are dialed (`host:port`, no scheme). */
  readonly address: string;
  options: PoolOptions;
  /** TLS for every connection of this pool, or undefined for plain TCP. */
  readonly tls: DialTlsOptions | undefined;
  private readonly loop: EventLoop;
  private readonly idle: ClientConnection[] = [];
  /** The wait queue: a ring of requesters with their deadlines. */
  private queue: (PoolRequester | null)[] = new Array(16).fill(null);
  private deadlines: number[] = new Array(16).fill(0);
  private head = 0;
  private count = 0;
  private open = 0;
  private created = 0;
  private reused = 0;
  private failed = 0;
  private overflowed = 0;
  private closing = false;
  private queueTimer: LoopTimer | null = null;
  private readonly handler = clientHandler({
    onOpen: (client) => this.opened(client),
    onClose: (client, err) => this.closed(client, err),
  });
  private readonly pending = new Map<ClientConnection, PoolRequester>();

  constructor(loop: EventLoop, address: string, options: PoolOptions, tls?: DialTlsOptions) {
    this.loop = loop;
    this.address = address;
    this.options = options;
    this.tls = tls;
  }

  /**
   * Hands `requester` an idle connection, a new one, or a place in the queue (or refuses: queue full).
   * `fresh`: not an idle one (a retry after a reused connection turned out closed).
   */
  acquire(requester: PoolRequester, fresh = false): void {
    const client = fresh ? undefined : this.idle.pop();
    if (client !== undefined) {
      this.reused++;
      client.conn.setDeadline(0);
      requester.onConnection(client, true);
      return;
    }
    if (this.closing) {
      requester.onPoolError(new PoolError('queue', `pool for ${this.address} closed`));
      return;
    }
    if (this.open < this.options.maxConnections || fresh) {
      this.dial(requester);
      return;
    }
    if (this.count >= this.options.maxQueue) {
      this.overflowed++;
      requester.onPoolError(new PoolError('queue', `the queue for ${this.address} is full`));
      return;
    }
    this.enqueue(requester, this.loop.now() + this.options.queueTimeout);
    if (this.queueTimer === null)
      this.queueTimer = this.loop.every(Math.min(this.options.queueTimeout, 100), () => this.expireWaiters());
  }

  /** Forgets a requester still waiting (its request was abandoned); true if it was waiting. */
  withdraw(requester: PoolRequester): boolean {
    const size = this.queue.length;
    for (let k = 0; k < this.count; k++) {
      const i = (this.head + k) % size;
      if (this.queue[i] !== requester) continue;
      // Closes the gap (the ones behind move up), so the place counts toward maxQueue no more.
      for (let m = k; m < this.count - 1; m++) {
        const to = (this.head + m) % size;
        const from = (to + 1) % size;
        this.queue[to] = this.queue[from]!;
        this.deadlines[to] = this.deadlines[from]!;
      }
      const last = (this.head + this.count - 1) % size;
      this.queue[last] = null;
      this.count--;
      return true;
    }
    return false;
  }

  /**
   * Takes a connection back after a complete exchange. It idles for `idleTimeout` at most, and for less than
   * the upstream said it keeps it (`Keep-Alive: timeout=N`, see `ClientConnection.keepAliveTimeout`).
   */
  release(exchange: UpstreamExchange): void {
    const client = exchange as ClientConnection;
    if (!client.reusable || client.conn.closed || client.conn.inboundBuffered > 0 || this.closing) {
      client.conn.close();
      return;
    }
    const waiter = this.dequeue();
    if (waiter !== null) {
      this.reused++;
      waiter.onConnection(client, true);
      return;
    }
    const keepAliveMs = client.keepAliveTimeout;
    let idleFor = this.options.idleTimeout;
    if (keepAliveMs >= 0)
      idleFor = Math.min(idleFor > 0 ? idleFor : keepAliveMs, keepAliveMs - KEEP_ALIVE_MARGIN_MS);
    if (this.idle.length >= this.options.maxIdle || (keepAliveMs >= 0 && idleFor <= 0)) {
      client.conn.close();
      return;
    }
    if (idleFor > 0) client.conn.setDeadline(idleFor);
    this.idle.push(client);
  }

  detach(exchange: UpstreamExchange): void {
    const client = exchange as ClientConnection;
    client.onIdle = null;
    this.open--;
    this.refill();
  }

  /** A slot freed up: a queued requester gets a fresh connection. */
  private refill(): void {
    if (this.count > 0 && this.open < this.options.maxConnections && !this.closing) {
      const next = this.dequeue();
      if (next !== null) this.dial(next);
    }
  }

  /** Closes idle connections and refuses new ones (a target removed by a reload). */
  close(): void {
    this.closing = true;
    for (const c of this.idle.splice(0)) c.conn.close();
    for (let w = this.dequeue(); w !== null; w = this.dequeue())
      w.onPoolError(new PoolError('closed', `pool for ${this.address} closed`));
    this.queueTimer?.cancel();
    this.queueTimer = null;
  }

  stats(): PoolStats {
    return {
      address: this.address,
      open: this.open,
      idle: this.idle.length,
      waiting: this.waiting(),
      created: this.created,
      reused: this.reused,
      failed: this.failed,
      overflowed: this.overflowed,
    };
  }

  private waiting(): number {
    let n = 0;
    for (let k = 0; k < this.count; k++) if (this.queue[(this.head + k) % this.queue.length] !== null) n++;
    return n;
  }

  private enqueue(requester: PoolRequester, deadline: number): void {
    if (this.count === this.queue.length) {
      // Grow the ring, unrolled from head.
      const size = this.queue.length * 2;
      const queue: (PoolRequester | null)[] = new Array(size).fill(null);
      const deadlines: number[] = new Array(size).fill(0);
      for (let k = 0; k < this.count; k++) {
        const i = (this.head + k) % this.queue.length;
        queue[k] = this.queue[i]!;
        deadlines[k] = this.deadlines[i]!;
      }
      this.queue = queue;
      this.deadlines = deadlines;
      this.head = 0;
    }
    const at = (this.head + this.count) % this.queue.length;
    this.queue[at] = requester;
    this.deadlines[at] = deadline;
    this.count++;
  }

  /** The oldest requester still waiting, or null. */
  private dequeue(): PoolRequester | null {
    while (this.count > 0) {
      const r = this.queue[this.head]!;
      this.queue[this.head] = null;
      this.head = (this.head + 1) % this.queue.length;
      this.count--;
      if (r !== null) return r;
    }
    return null;
  }

  private dial(requester: PoolRequester): void {
    this.open++;
    this.created++;
    const conn = this.loop.dial<ClientConnection>(this.address, this.handler, {
      timeout: this.options.connectTimeout,
      tls: this.tls,
    });
    const client = new ClientConnection(conn);
    conn.context = client;
    client.onIdle = (c) => {
      if (!c.busy && !c.conn.closed) this.release(c);
    };
    this.pending.set(client, requester);
  }

  private opened(client: ClientConnection): void {
    const requester = this.pending.get(client);
    this.pending.delete(client);
    requester?.onConnection(client, false);
  }

  private closed(client: ClientConnection, err: Error | undefined): void {
    this.open--;
    const i = this.idle.indexOf(client);
    if (i !== -1) this.idle.splice(i, 1);
    const requester = this.pending.get(client);
    if (requester !== undefined) {
      this.pending.delete(client);
      this.failed++;
      const code = (err as { code?: string } | undefined)?.code;
      requester.onPoolError(
        code === 'ERR_NETLOOM_DIAL_TIMEOUT'
          ? new PoolError('connect-timeout', `connect to ${this.address} timed out`, err)
          : new PoolError('connect', `connect to ${this.address} failed: ${err?.message ?? 'closed'}`, err),
      );
    }
    this.refill();
  }

  private expireWaiters(): void {
    const now = this.loop.now();
    while (this.count > 0) {
      const r = this.queue[this.head];
      if (r !== null && this.deadlines[this.head]! > now) break;
      this.queue[this.head] = null;
      this.head = (this.head + 1) % this.queue.length;
      this.count--;
      r?.onPoolError(new PoolError('queue', `no connection to ${this.address} became free in time`));
    }
    if (this.count === 0) {
      this.queueTimer?.cancel();
      this.queueTimer = null;
    }
  }
}
