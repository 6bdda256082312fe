/**
 * What the governance filters of the configuration in force have counted, read from the loops' shared
 * memory on the main thread (the admin endpoint's `/stats` and `/faults`, and the `/metrics` scrape):
 * rate limits, circuits, mirrors and the runtime fault switches. No message to the loops.
 */
import { type CircuitStats, circuitIds, circuitStats } from './circuit-breaker.ts';
import type { GatewayConfig } from './config.ts';
import { type FaultSwitch, faultSwitch } from './fault.ts';
import { type MirrorStats, mirrorStats } from './mirror.ts';
import { redisCounters } from './rate-limit-redis.ts';
import type { SharedState } from './shared-state.ts';

/** `Gateway.limitStats()`: the admin endpoint's `rateLimits`. */
export interface LimitStats {
  keySlots: number;
  evictions: number;
  /** Requests each route's `rate-limit` filters refused (429, and 503 while Redis failed closed). */
  rejected: Record<string, number>;
  /** Present when a route keeps limits on Redis: this process's figures. */
  redis?: {
    calls: number;
    /** Calls Redis answered (with a grant or a refusal); calls - answered - errors are on their way. */
    answered: number;
    errors: number;
    failOpen: number;
    failClosed: number;
    breakerOpened: number;
  };
}

/** The rate limits of `config`'s routes, as `view` counted them. */
export function limitStatsOf(config: GatewayConfig, view: SharedState): LimitStats {
  // No prototype: a route may be named `__proto__` (any non-empty string).
  const rejected: Record<string, number> = Object.create(null);
  let redis = false;
  for (const r of config.routes)
    for (const f of r.filters)
      if (f.name === 'rate-limit') {
        rejected[r.name] = view.counter(`rate-limit|${r.name}|rejected`).get();
        if ((f as { redis?: unknown }).redis !== undefined) redis = true;
      }
  const stats: LimitStats = { keySlots: view.keys.slots, evictions: view.keys.evictions, rejected };
  if (redis) {
    const c = redisCounters(view);
    stats.redis = {
      calls: c.calls.get(),
      answered: c.answered.get(),
      errors: c.errors.get(),
      failOpen: c.failOpen.get(),
      failClosed: c.failClosed.get(),
      breakerOpened: c.breakerOpened.get(),
    };
  }
  return stats;
}

/** The circuits of `config`'s `circuit-breaker` filters, summed over the loops. */
export function circuitStatsOf(config: GatewayConfig, view: SharedState): Record<string, CircuitStats> {
  const ids = new Set<string>();
  for (const r of config.routes) {
    const entries = r.filters.filter((f) => f.name === 'circuit-breaker') as { scope?: unknown }[];
    if (entries.length === 0) continue;
    // Any upstream: a filter (or a breaker's degraded fallback) may send a request to any of them.
    for (const id of circuitIds(r.name, entries, Object.keys(config.upstreams))) ids.add(id);
  }
  // Built from entries: names may be `__proto__`.
  return Object.fromEntries([...ids].map((id): [string, CircuitStats] => [id, circuitStats(view, id)]));
}

/** The mirrors of `config`'s routes that have one, summed over the loops. */
export function mirrorStatsOf(config: GatewayConfig, view: SharedState): Record<string, MirrorStats> {
  // Built from entries: a route may be named `__proto__`.
  return Object.fromEntries(
    config.routes
      .filter((r) => r.mirror !== undefined)
      .map((r): [string, MirrorStats] => [r.name, mirrorStats(view, r.name)]),
  );
}

/** The routes of `config` with a `fault` filter. */
export function faultRoutes(config: GatewayConfig): string[] {
  return config.routes.filter((r) => r.filters.some((f) => f.name === 'fault')).map((r) => r.name);
}

/** Those routes' runtime fault switches (`config`: as configured). */
export function faultsOf(config: GatewayConfig, view: SharedState): Record<string, FaultSwitch> {
  // Built from entries: a route may be named `__proto__` or `toString` (any non-empty string).
  return Object.fromEntries(
    faultRoutes(config).map((name): [string, FaultSwitch] => [name, faultSwitch(view, name)]),
  );
}
