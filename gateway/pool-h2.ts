/**
 * HTTP/2 connections to one target, owned by one loop: requests are multiplexed as streams on as few
 * connections as the server's SETTINGS_MAX_CONCURRENT_STREAMS allows (up to `maxConnections` of them).
 * A requester gets a reserved stream at once when a connection has room, a new connection when none has,
 * or waits (at most `maxQueue` requesters, each for `queueTimeout`) for a stream to end. A new connection
 * hands out streams only once the server's SETTINGS said how many it takes; one the server is closing
 * (GOAWAY) takes none and no longer counts against `maxConnections`.
 */
import type { DialTlsOptions, EventLoop, LoopTimer } from '../core/index.ts';
import {
  Http2ClientConnection,
  type Http2ClientStream,
  http2ClientHandler,
} from '../protocols/http2/index.ts';
import {
  PoolError,
  type PoolOptions,
  type PoolRequester,
  type PoolStats,
  type UpstreamExchange,
  type UpstreamPool,
} from './pool.ts';

interface Waiter {
  requester: PoolRequester;
  deadline: number;
}

export class Http2TargetPool implements UpstreamPool {
  readonly address: string;
  options: PoolOptions;
  readonly tls: DialTlsOptions | undefined;
  private readonly loop: EventLoop;
  /** Connections open (or dialing), oldest first. */
  private readonly sessions: Http2ClientConnection[] = [];
  /** Requesters waiting for a dial in progress, per connection. */
  private readonly pending = new Map<Http2ClientConnection, PoolRequester[]>();
  private queue: Waiter[] = [];
  private queueTimer: LoopTimer | null = null;
  private closing = false;
  private created = 0;
  private reused = 0;
  private failed = 0;
  private overflowed = 0;
  private readonly handler = http2ClientHandler({
    onOpen: (c) => this.opened(c),
    onClose: (c, err) => this.closed(c, err),
  });

  constructor(loop: EventLoop, address: string, options: PoolOptions, tls?: DialTlsOptions) {
    this.loop = loop;
    this.address = address;
    this.options = options;
    this.tls = tls;
  }

  private get scheme(): 'http' | 'https' {
    return this.tls === undefined ? 'http' : 'https';
  }

  /**
   * `fresh` (a stream the server did not process, sent again) changes nothing here: a connection that
   * refused streams after GOAWAY takes no new one, and one that refused a stream over its limit is asked
   * only within its limit now.
   */
  acquire(requester: PoolRequester, _fresh = false): void {
    if (this.closing) {
      requester.onPoolError(new PoolError('closed', `pool for ${this.address} closed`));
      return;
    }
    for (const c of this.sessions) {
      if (this.pending.has(c) || c.capacity === 0) continue;
      this.reused++;
      requester.onConnection(c.reserve(this.scheme), true);
      return;
    }
    if (this.live() < this.options.maxConnections) {
      this.dial(requester);
      return;
    }
    // A connection still starting takes requesters up to the default limit of 100 streams; they get their
    // streams when its SETTINGS arrive (the ones beyond its real limit wait in the queue then).
    for (const waiting of this.pending.values()) {
      if (waiting.length < 100) {
        waiting.push(requester);
        return;
      }
    }
    if (this.queue.length >= this.options.maxQueue) {
      this.overflowed++;
      requester.onPoolError(new PoolError('queue', `the queue for ${this.address} is full`));
      return;
    }
    this.queue.push({ requester, deadline: this.loop.now() + this.options.queueTimeout });
    this.queueTimer ??= this.loop.every(Math.min(this.options.queueTimeout, 100), () => this.expireWaiters());
  }

  withdraw(requester: PoolRequester): boolean {
    const i = this.queue.findIndex((w) => w.requester === requester);
    if (i !== -1) {
      this.queue.splice(i, 1);
      return true;
    }
    for (const waiting of this.pending.values()) {
      const k = waiting.indexOf(requester);
      if (k !== -1) {
        waiting.splice(k, 1);
        return true;
      }
    }
    return false;
  }

  /** A stream handed out and not used (the call ended first): its slot goes back. */
  release(client: UpstreamExchange): void {
    const s = client as Http2ClientStream;
    s.session.unreserve(s);
  }

  detach(): void {
    throw new Error('HTTP/2 streams do not switch protocols');
  }

  close(): void {
    this.closing = true;
    for (const c of this.sessions) if (c.active === 0) c.conn.close();
    for (const w of this.queue.splice(0))
      w.requester.onPoolError(new PoolError('closed', `pool for ${this.address} closed`));
    this.queueTimer?.cancel();
    this.queueTimer = null;
  }

  stats(): PoolStats {
    let idle = 0;
    for (const c of this.sessions) if (c.active === 0) idle++;
    return {
      address: this.address,
      open: this.sessions.length,
      idle,
      waiting: this.queue.length,
      created: this.created,
      reused: this.reused,
      failed: this.failed,
      overflowed: this.overflowed,
    };
  }

  private dial(requester: PoolRequester): void {
    this.created++;
    const conn = this.loop.dial<Http2ClientConnection>(this.address, this.handler, {
      timeout: this.options.connectTimeout,
      tls: this.tls,
    });
    const client = new Http2ClientConnection(conn);
    client.onStreamEnd = (c) => this.streamEnded(c);
    client.onReady = (c) => this.ready(c);
    client.onGoaway = () => this.replaceIfNeeded();
    this.sessions.push(client);
    this.pending.set(client, [requester]);
  }

  /** Connections that may still take streams (dialing or open, not going away). */
  private live(): number {
    let n = 0;
    for (const c of this.sessions) if (!c.goingAway) n++;
    return n;
  }

  private opened(client: Http2ClientConnection): void {
    if (this.tls !== undefined && client.conn.alpnProtocol !== 'h2') {
      client.conn.close(
        new Error(`${this.address} did not agree to HTTP/2 (ALPN ${client.conn.alpnProtocol ?? 'none'})`),
      );
    }
    // Streams are handed out once the server's SETTINGS say how many it takes (see `ready`); a server that
    // never sends them is given up on like a dial that does not complete.
    client.expectSettingsWithin(this.options.connectTimeout);
  }

  /** The server's SETTINGS arrived: the requesters that waited for this connection get streams. */
  private ready(client: Http2ClientConnection): void {
    const waiting = this.pending.get(client) ?? [];
    this.pending.delete(client);
    const now = this.loop.now();
    const over: Waiter[] = [];
    for (const r of waiting) {
      if (client.capacity > 0) r.onConnection(client.reserve(this.scheme), false);
      else over.push({ requester: r, deadline: now + this.options.queueTimeout });
    }
    if (over.length > 0) {
      this.queue.unshift(...over);
      this.queueTimer ??= this.loop.every(Math.min(this.options.queueTimeout, 100), () =>
        this.expireWaiters(),
      );
    }
    this.streamEnded(client); // queued requesters take what is left
  }

  /** A connection went away: a replacement is dialed for requesters waiting. */
  private replaceIfNeeded(): void {
    if (this.closing || this.queue.length === 0 || this.live() >= this.options.maxConnections) return;
    this.dial(this.queue.shift()!.requester);
  }

  /** A stream ended: a waiting requester takes its slot. */
  private streamEnded(client: Http2ClientConnection): void {
    while (this.queue.length > 0 && client.capacity > 0 && !this.pending.has(client)) {
      const w = this.queue.shift()!;
      this.reused++;
      w.requester.onConnection(client.reserve(this.scheme), true);
    }
    if (client.active === 0) {
      // Keep one idle connection per target for `idleTimeout`; close the rest.
      const idle = this.sessions.filter((c) => c.active === 0 && !this.pending.has(c));
      if (this.closing || idle.length > Math.max(1, this.options.maxIdle)) client.conn.close();
      else if (this.options.idleTimeout > 0) client.closeWhenIdleFor(this.options.idleTimeout);
    }
  }

  private closed(client: Http2ClientConnection, err: Error | undefined): void {
    const i = this.sessions.indexOf(client);
    if (i !== -1) this.sessions.splice(i, 1);
    const waiting = this.pending.get(client);
    if (waiting !== undefined) {
      this.pending.delete(client);
      this.failed++;
      const code = (err as { code?: string } | undefined)?.code;
      for (const r of waiting)
        r.onPoolError(
          code === 'ERR_NETLOOM_DIAL_TIMEOUT'
            ? new PoolError('connect-timeout', `connect to ${this.address} timed out`, err)
            : new PoolError('connect', `connect to ${this.address} failed: ${err?.message ?? 'closed'}`, err),
        );
    }
    this.replaceIfNeeded();
  }

  private expireWaiters(): void {
    const now = this.loop.now();
    while (this.queue.length > 0 && this.queue[0]!.deadline <= now) {
      this.queue
        .shift()!
        .requester.onPoolError(new PoolError('queue', `no stream to ${this.address} became free in time`));
    }
    if (this.queue.length === 0) {
      this.queueTimer?.cancel();
      this.queueTimer = null;
    }
  }
}
