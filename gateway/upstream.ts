import type { EventLoop, LoopTimer } from '../core/index.ts';
import {
  ClientConnection,
  type ClientResponse,
  clientHandler,
  type Request,
} from '../protocols/http1/index.ts';
import { type BalancedTarget, type Balancer, createBalancer } from './balancer.ts';
import type { UpstreamConfig } from './config.ts';
import { TargetPool } from './pool.ts';

/** One target of an upstream on one loop: its pool and its health. */
export class UpstreamTarget implements BalancedTarget {
  readonly address: string;
  readonly weight: number;
  readonly pool: TargetPool;
  active = 0;
  healthy = true;
  ejectedUntil = 0;
  /** Consecutive failed proxied exchanges (passive health). */
  failures = 0;
  /** Consecutive active-check results in the current direction. */
  checkStreak = 0;
  /** Requests sent to this target from this loop. */
  requests = 0;

  constructor(address: string, weight: number, pool: TargetPool) {
    this.address = address;
    this.weight = weight;
    this.pool = pool;
  }
}

/** Per-loop state that survives reloads: pools and target health, by upstream name and address. */
export class TargetRegistry {
  private readonly targets = new Map<string, UpstreamTarget>();
  private readonly loop: EventLoop;

  constructor(loop: EventLoop) {
    this.loop = loop;
  }

  /** The target for `upstream|address|weight`, reused when a reload keeps it. */
  target(upstream: string, config: UpstreamConfig, address: string, weight: number): UpstreamTarget {
    const key = `${upstream}|${address}|${weight}`;
    let t = this.targets.get(key);
    if (t === undefined) {
      t = new UpstreamTarget(address, weight, new TargetPool(this.loop, address, config.pool));
      this.targets.set(key, t);
    } else {
      t.pool.options = config.pool;
    }
    return t;
  }

  /** Closes the pools of targets no configuration uses any more. */
  retain(used: ReadonlySet<UpstreamTarget>): void {
    for (const [key, t] of this.targets) {
      if (!used.has(t)) {
        t.pool.close();
        this.targets.delete(key);
      }
    }
  }
}

/** An upstream on one loop: targets, a balancer, passive and active health. */
export class Upstream {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly targets: UpstreamTarget[];
  private readonly balancer: Balancer<UpstreamTarget>;
  private readonly loop: EventLoop;
  private checker: LoopTimer | null = null;

  constructor(loop: EventLoop, name: string, config: UpstreamConfig, registry: TargetRegistry) {
    this.loop = loop;
    this.name = name;
    this.config = config;
    this.targets = config.targets.map((t) => registry.target(name, config, t.address, t.weight));
    this.balancer = createBalancer(config.balance, this.targets);
  }

  /** The key consistent hashing uses for this request (header, cookie or client address). */
  hashKey(req: Request): string | undefined {
    const on = this.config.hashOn;
    if (on === undefined) return undefined;
    if ('header' in on) return req.header(on.header);
    if ('cookie' in on) return cookieValue(req.header('cookie'), on.cookie);
    return req.remoteAddress;
  }

  /** A usable target (healthy, not ejected, not in `exclude`), or null. */
  pick(key: string | undefined, exclude: ReadonlySet<UpstreamTarget> | null): UpstreamTarget | null {
    return this.balancer.pick(key, this.loop.now(), exclude);
  }

  /** Passive health: a proxied exchange with this target succeeded. */
  succeeded(t: UpstreamTarget): void {
    t.failures = 0;
  }

  /** Passive health: a proxied exchange failed (connect error, reset, timeout or 5xx); eject after a run. */
  failed(t: UpstreamTarget): void {
    if (++t.failures >= this.config.passive.consecutiveFailures) {
      t.failures = 0;
      t.ejectedUntil = this.loop.now() + this.config.passive.ejectTime;
      this.loop.log.warn('upstream target ejected', {
        upstream: this.name,
        target: t.address,
        for: this.config.passive.ejectTime,
      });
    }
  }

  /** Starts active health checks (if configured). */
  startChecks(): void {
    const hc = this.config.healthCheck;
    if (hc === undefined) {
      // Without active checks nothing would ever mark a target healthy again (after a reload that removed
      // them). Done here, when the configuration is in force, not while it is only being built.
      for (const t of this.targets) {
        t.healthy = true;
        t.checkStreak = 0;
      }
      return;
    }
    if (this.checker !== null) return;
    this.checker = this.loop.every(hc.interval, () => {
      for (const t of this.targets) this.check(t);
    });
    for (const t of this.targets) this.check(t);
  }

  stopChecks(): void {
    this.checker?.cancel();
    this.checker = null;
  }

  private check(t: UpstreamTarget): void {
    const hc = this.config.healthCheck!;
    let status = 0;
    let settled = false;
    const settle = (ok: boolean) => {
      if (settled) return;
      settled = true;
      this.checked(t, ok);
    };
    const conn = this.loop.dial<ClientConnection>(
      t.address,
      clientHandler({
        onOpen: (client) => {
          client.conn.write(
            `GET ${hc.path} HTTP/1.1\r\nHost: ${t.address}\r\nUser-Agent: netloom-health\r\nConnection: close\r\n\r\n`,
          );
          client.begin('GET', {
            onHead: (res: ClientResponse) => {
              status = res.status;
            },
            onBody: () => {},
            onEnd: () => {
              settle(status >= 200 && status < 400);
              client.conn.close();
            },
            onError: () => settle(false),
          });
        },
        onClose: () => settle(false),
      }),
      { timeout: hc.timeout },
    );
    conn.context = new ClientConnection(conn);
    conn.setDeadline(hc.timeout);
  }

  private checked(t: UpstreamTarget, ok: boolean): void {
    const hc = this.config.healthCheck!;
    if (ok === t.healthy) {
      t.checkStreak = 0;
      return;
    }
    // A run of results against the current state flips it once it reaches the threshold.
    if (++t.checkStreak >= (ok ? hc.healthyThreshold : hc.unhealthyThreshold)) {
      t.healthy = ok;
      t.checkStreak = 0;
      if (ok) t.ejectedUntil = 0;
      this.loop.log.info(ok ? 'upstream target healthy' : 'upstream target unhealthy', {
        upstream: this.name,
        target: t.address,
      });
    }
  }
}

/** The value of cookie `name` in a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
