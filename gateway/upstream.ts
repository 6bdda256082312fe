import { createHash } from 'node:crypto';
import { type EventLoop, parseAddress } from '../core/index.ts';
import type { Request } from '../protocols/http1/index.ts';
import { type BalancedTarget, type Balancer, createBalancer } from './balancer.ts';
import type { FailureKind } from './completion.ts';
import type { UpstreamConfig } from './config.ts';
import { HealthChecker } from './health.ts';
import { type PoolOptions, TargetPool, type UpstreamPool } from './pool.ts';
import { Http2TargetPool } from './pool-h2.ts';
import { RetryBudget, type RetryBudgetSettings } from './retry-budget.ts';
import { dialTls, splitScheme } from './tls-config.ts';

/** The Host a request to `address` carries when the route does not keep the client's: `host:port`. */
/** Methods a request may be sent again with, on another target or connection (RFC 9110 §9.2.2). */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

export function hostOf(address: string): string {
  const a = parseAddress(splitScheme(address).address);
  if (a.kind === 'unix') return 'localhost';
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** One target of an upstream on one loop: its pool and its health. It outlives reloads that keep it. */
export class UpstreamTarget implements BalancedTarget {
  readonly address: string;
  /** The Host value for this target (`host:port`, whatever form the address was written in). */
  readonly host: string;
  /** Its weight in the balancer; a reload may change it in place (pool and health stay). */
  weight: number;
  readonly pool: UpstreamPool;
  active = 0;
  healthy = true;
  ejectedUntil = 0;
  /** Consecutive failed proxied exchanges (passive health). */
  failures = 0;
  /** Requests sent to this target from this loop. */
  requests = 0;
  /** The active checks of this target, when its upstream has them. */
  checker: HealthChecker | null = null;

  constructor(address: string, weight: number, pool: UpstreamPool) {
    this.address = address;
    this.host = hostOf(address);
    this.weight = weight;
    this.pool = pool;
  }
}

/**
 * Per-loop state that survives reloads, by upstream name and address: pools, health and the running checks.
 * A reload that changes only a target's weight, or an upstream's other settings, keeps all of it.
 */
export class TargetRegistry {
  private readonly targets = new Map<string, UpstreamTarget>();
  private readonly loop: EventLoop;

  constructor(loop: EventLoop) {
    this.loop = loop;
  }

  /**
   * The target for `upstream`'s `address`, reused when a reload keeps it. A kept target's weight and pool
   * settings are not touched here: the version being prepared may still be rolled back, so `apply` sets
   * them when it comes into force.
   */
  target(upstream: string, config: UpstreamConfig, address: string, weight: number): UpstreamTarget {
    // TLS is part of the key, files' contents included: a target whose TLS changed (a renewed client
    // certificate at the same path, read again at a reload) is a new one (new pool, fresh health).
    const { address: dialAddress, https } = splitScheme(address);
    const http2 = config.protocol === 'http2';
    const tls = dialTls(config.tls, https, http2);
    const tlsKey = tls === undefined ? '' : createHash('sha256').update(JSON.stringify(tls)).digest('hex');
    // The protocol is part of the key too: a reload that changes it gets new pools.
    const key = `${upstream}|${address}|${config.protocol}|${tlsKey}`;
    let t = this.targets.get(key);
    if (t === undefined) {
      const options = config.pool as PoolOptions;
      t = new UpstreamTarget(
        address,
        weight,
        http2
          ? new Http2TargetPool(this.loop, dialAddress, options, tls)
          : new TargetPool(this.loop, dialAddress, options, tls),
      );
      this.targets.set(key, t);
    }
    return t;
  }

  /**
   * Makes `used` (upstream name -> its config and targets) the targets in force: their active checks start,
   * keep running unchanged, or restart where their settings changed; other targets' checks stop and their
   * pools close.
   */
  apply(used: ReadonlyMap<string, { config: UpstreamConfig; targets: readonly UpstreamTarget[] }>): void {
    const keep = new Set<UpstreamTarget>();
    for (const [name, { config, targets }] of used) {
      for (let i = 0; i < targets.length; i++) {
        const t = targets[i]!;
        keep.add(t);
        // The version in force says the weight and pool settings (a prepared one that was rolled back did not).
        t.weight = config.targets[i]!.weight;
        t.pool.options = config.pool as PoolOptions;
        const hc = config.healthCheck;
        if (hc === undefined) {
          if (t.checker !== null) {
            // Checks removed: nothing would ever mark the target healthy again, so it is healthy now.
            t.checker.stop();
            t.checker = null;
            t.healthy = true;
          }
          continue;
        }
        if (t.checker?.sameSettings(hc)) continue;
        t.checker?.stop();
        t.checker = new HealthChecker(this.loop, name, t, hc);
        t.checker.start();
      }
    }
    for (const [key, t] of this.targets) {
      if (keep.has(t)) continue;
      t.checker?.stop();
      t.checker = null;
      t.pool.close();
      this.targets.delete(key);
    }
  }

  /** Stops every check and closes every pool (the loop is shutting down). */
  close(): void {
    for (const t of this.targets.values()) {
      t.checker?.stop();
      t.checker = null;
      t.pool.close();
    }
    this.targets.clear();
  }
}

/** Failures that count against a target (connection-level ones; statuses only when configured). */
const TARGET_FAILURES: ReadonlySet<FailureKind> = new Set<FailureKind>([
  'connect-failed',
  'connect-timeout',
  'upstream-timeout',
  'upstream-closed',
  'bad-response',
]);

/** Each loop's retry budgets, by upstream and settings: a reload that keeps them keeps what was spent. */
const budgets = new WeakMap<EventLoop, Map<string, RetryBudget>>();

function retryBudgetOf(loop: EventLoop, name: string, settings: RetryBudgetSettings): RetryBudget {
  let byName = budgets.get(loop);
  if (byName === undefined) {
    byName = new Map();
    budgets.set(loop, byName);
  }
  const key = `${name}\u0000${settings.percent}\u0000${settings.minPerSecond}\u0000${settings.window}`;
  let budget = byName.get(key);
  if (budget === undefined) {
    budget = new RetryBudget(settings);
    byName.set(key, budget);
  }
  return budget;
}

/** An upstream on one loop, for one configuration version: its targets and balancer, and passive health. */
export class Upstream {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly targets: UpstreamTarget[];
  private readonly balancer: Balancer<UpstreamTarget>;
  private readonly loop: EventLoop;
  private readonly failingStatuses: ReadonlySet<number>;
  /** Bounds the retries of this upstream on this loop (null: `retryBudget: false`). */
  readonly retryBudget: RetryBudget | null;
  /**
   * The same upstream in the version that replaced this one (null while this one is in force): a request
   * of an old version whose target left can be taken by the targets in force.
   */
  successor: Upstream | null = null;

  constructor(loop: EventLoop, name: string, config: UpstreamConfig, registry: TargetRegistry) {
    this.loop = loop;
    this.retryBudget = config.retryBudget === false ? null : retryBudgetOf(loop, name, config.retryBudget);
    this.name = name;
    this.config = config;
    this.targets = config.targets.map((t) => registry.target(name, config, t.address, t.weight));
    this.balancer = createBalancer(
      config.balance,
      this.targets,
      config.targets.map((t) => t.weight),
    );
    this.failingStatuses = new Set(config.passive.statuses);
  }

  /** The key consistent hashing uses for this request (header, cookie or client address). */
  hashKey(req: Request): string | undefined {
    const on = this.config.hashOn;
    if (on === undefined) return undefined;
    if ('header' in on) return req.header(on.header);
    if ('cookie' in on) return cookieValue(req.header('cookie'), on.cookie);
    return req.remoteAddress;
  }

  /**
   * A target for the request (skipping `exclude`, already tried), or null. When fewer than `panicThreshold`
   * percent of the targets are usable (healthy and not ejected), health is ignored: every target may be
   * picked (Envoy's panic mode: a partial failure of the checks must not concentrate all traffic, or none).
   */
  pick(key: string | undefined, exclude: ReadonlySet<UpstreamTarget> | null): UpstreamTarget | null {
    const now = this.loop.now();
    const panicAt = this.config.panicThreshold;
    if (panicAt > 0) {
      const targets = this.targets;
      let usable = 0;
      for (let i = 0; i < targets.length; i++) {
        const x = targets[i]!;
        if (x.healthy && x.ejectedUntil <= now) usable++;
      }
      if (usable * 100 < panicAt * targets.length) return this.balancer.pick(key, now, exclude, true);
    }
    return this.balancer.pick(key, now, exclude);
  }

  /** Passive health: an exchange with this target ended with `status` and no connection-level failure. */
  answered(t: UpstreamTarget, status: number): void {
    if (this.failingStatuses.has(status)) this.failed(t, 'bad-response');
    else t.failures = 0;
  }

  /**
   * Passive health: an exchange failed; only connection-level failures (and configured statuses) count.
   * A run of `consecutiveFailures` ejects the target for `ejectTime`, unless `maxEjectionPercent` of the
   * targets are ejected already (one may always be).
   */
  failed(t: UpstreamTarget, kind: FailureKind): void {
    if (!TARGET_FAILURES.has(kind)) return;
    const passive = this.config.passive;
    if (++t.failures < passive.consecutiveFailures) return;
    t.failures = 0;
    const now = this.loop.now();
    let ejected = 0;
    for (const x of this.targets) if (x.ejectedUntil > now) ejected++;
    const cap = Math.max(1, Math.floor((this.targets.length * passive.maxEjectionPercent) / 100));
    if (ejected >= cap) {
      this.loop.log.warn('upstream target not ejected: the ejection cap is reached', {
        upstream: this.name,
        target: t.address,
        ejected,
      });
      return;
    }
    t.ejectedUntil = now + passive.ejectTime;
    this.loop.log.warn('upstream target ejected', {
      upstream: this.name,
      target: t.address,
      for: passive.ejectTime,
    });
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
