import type { EventLoop } from '../core/index.ts';
import { ClientConnection, clientHandler } from '../protocols/http1/index.ts';

/** Pool settings of one upstream (see the `pool` section of the configuration). */
export interface PoolOptions {
  maxConnections: number;
  maxIdle: number;
  idleTimeout: number;
  connectTimeout: number;
  queueTimeout: number;
}

/** Who asked for a connection: told once, either way. */
export interface PoolRequester {
  onConnection(client: ClientConnection): void;
  onPoolError(err: PoolError): void;
}

/** Why a connection could not be had: `connect` (dial failed or timed out) or `queue` (pool exhausted). */
export class PoolError extends Error {
  readonly kind: 'connect' | 'connect-timeout' | 'queue';
  constructor(kind: 'connect' | 'connect-timeout' | 'queue', message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'PoolError';
    this.kind = kind;
  }
}

interface Waiter {
  requester: PoolRequester;
  deadline: number;
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
}

/**
 * Keep-alive connections to one target, owned by one loop (pools are never shared across threads). Idle
 * connections are reused most-recent first; at `maxConnections` requesters wait in order for up to
 * `queueTimeout`; idle connections close after `idleTimeout` or beyond `maxIdle`.
 */
export class TargetPool {
  readonly address: string;
  options: PoolOptions;
  private readonly loop: EventLoop;
  private readonly idle: ClientConnection[] = [];
  private readonly waiters: Waiter[] = [];
  private open = 0;
  private created = 0;
  private reused = 0;
  private failed = 0;
  private closing = false;
  private queueTimer: { cancel(): void } | null = null;
  private readonly handler = clientHandler({
    onOpen: (client) => this.opened(client),
    onClose: (client, err) => this.closed(client, err),
  });
  private readonly pending = new Map<ClientConnection, PoolRequester>();

  constructor(loop: EventLoop, address: string, options: PoolOptions) {
    this.loop = loop;
    this.address = address;
    this.options = options;
  }

  /** Hands `requester` an idle connection, a new one, or a place in the queue. */
  acquire(requester: PoolRequester): void {
    const client = this.idle.pop();
    if (client !== undefined) {
      this.reused++;
      client.conn.setDeadline(0);
      requester.onConnection(client);
      return;
    }
    if (this.open < this.options.maxConnections) {
      this.dial(requester);
      return;
    }
    this.waiters.push({ requester, deadline: this.loop.now() + this.options.queueTimeout });
    if (this.queueTimer === null)
      this.queueTimer = this.loop.every(Math.min(this.options.queueTimeout, 100), () => this.expireWaiters());
  }

  /** Takes a connection back after a complete exchange. */
  release(client: ClientConnection): void {
    if (!client.reusable || client.conn.closed || client.conn.inboundBuffered > 0 || this.closing) {
      client.conn.close();
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      this.reused++;
      waiter.requester.onConnection(client);
      return;
    }
    if (this.idle.length >= this.options.maxIdle) {
      client.conn.close();
      return;
    }
    if (this.options.idleTimeout > 0) client.conn.setDeadline(this.options.idleTimeout);
    this.idle.push(client);
  }

  /** Closes idle connections and refuses new ones (a target removed by a reload). */
  close(): void {
    this.closing = true;
    for (const c of this.idle.splice(0)) c.conn.close();
    for (const w of this.waiters.splice(0))
      w.requester.onPoolError(new PoolError('queue', `pool for ${this.address} closed`));
    this.queueTimer?.cancel();
    this.queueTimer = null;
  }

  stats(): PoolStats {
    return {
      address: this.address,
      open: this.open,
      idle: this.idle.length,
      waiting: this.waiters.length,
      created: this.created,
      reused: this.reused,
      failed: this.failed,
    };
  }

  private dial(requester: PoolRequester): void {
    this.open++;
    this.created++;
    const conn = this.loop.dial<ClientConnection>(this.address, this.handler, {
      timeout: this.options.connectTimeout,
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
    requester?.onConnection(client);
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
    // A slot freed up: a queued requester gets a fresh connection.
    if (this.waiters.length > 0 && this.open < this.options.maxConnections && !this.closing) {
      this.dial(this.waiters.shift()!.requester);
    }
  }

  private expireWaiters(): void {
    const now = this.loop.now();
    while (this.waiters.length > 0 && this.waiters[0]!.deadline <= now) {
      this.waiters
        .shift()!
        .requester.onPoolError(
          new PoolError('queue', `no connection to ${this.address} became free in time`),
        );
    }
    if (this.waiters.length === 0) {
      this.queueTimer?.cancel();
      this.queueTimer = null;
    }
  }
}
