import { hash32 } from '../core/index.ts';

/**
 * Load balancing over an upstream's targets: round robin, smooth weighted round robin (nginx's algorithm),
 * least connections (weighted), and consistent hashing on a ring with virtual nodes (a removed target only
 * moves the keys it owned). Every balancer skips targets that are unhealthy, ejected, or excluded (already
 * tried by a retry). One balancer per upstream per loop: no locking, no shared state across threads.
 */

/** A target as balancers see it; the upstream keeps the live state here. */
export interface BalancedTarget {
  readonly address: string;
  readonly weight: number;
  /** Requests in flight to this target from this loop. */
  active: number;
  /** Passed active health checks (true until a check says otherwise). */
  healthy: boolean;
  /** Passive ejection: unusable until this time (ms). */
  ejectedUntil: number;
}

export interface Balancer<T extends BalancedTarget> {
  /**
   * A target for `key` (used by consistent hashing), skipping `exclude`d ones and, unless `panic`, unusable
   * ones (unhealthy or ejected); null if none.
   */
  pick(key: string | undefined, now: number, exclude: ReadonlySet<T> | null, panic?: boolean): T | null;
}

/** `now` is -Infinity in panic mode: every target counts as usable (only exclusions remain). */
function usable<T extends BalancedTarget>(t: T, now: number, exclude: ReadonlySet<T> | null): boolean {
  return (
    (now === Number.NEGATIVE_INFINITY || (t.healthy && t.ejectedUntil <= now)) &&
    (exclude === null || !exclude.has(t))
  );
}

/** The `now` balancers compare with: -Infinity in panic mode. */
function clock(now: number, panic: boolean | undefined): number {
  return panic === true ? Number.NEGATIVE_INFINITY : now;
}

export class RoundRobin<T extends BalancedTarget> implements Balancer<T> {
  private next = 0;
  private readonly targets: readonly T[];
  constructor(targets: readonly T[]) {
    this.targets = targets;
  }

  pick(_key: string | undefined, at: number, exclude: ReadonlySet<T> | null, panic?: boolean): T | null {
    const now = clock(at, panic);
    const n = this.targets.length;
    for (let i = 0; i < n; i++) {
      const t = this.targets[(this.next + i) % n]!;
      if (usable(t, now, exclude)) {
        this.next = (this.next + i + 1) % n;
        return t;
      }
    }
    return null;
  }
}

/** nginx's smooth weighted round robin: weights 5,1,1 give a,a,b,a,c,a,a rather than a,a,a,a,a,b,c. */
export class SmoothWeighted<T extends BalancedTarget> implements Balancer<T> {
  private readonly current: number[];
  private readonly targets: readonly T[];
  constructor(targets: readonly T[]) {
    this.targets = targets;
    this.current = targets.map(() => 0);
  }

  pick(_key: string | undefined, at: number, exclude: ReadonlySet<T> | null, panic?: boolean): T | null {
    const now = clock(at, panic);
    let total = 0;
    let best = -1;
    for (let i = 0; i < this.targets.length; i++) {
      const t = this.targets[i]!;
      if (!usable(t, now, exclude)) continue;
      this.current[i]! += t.weight;
      total += t.weight;
      if (best === -1 || this.current[i]! > this.current[best]!) best = i;
    }
    if (best === -1) return null;
    this.current[best]! -= total;
    return this.targets[best]!;
  }
}

/** Fewest requests in flight relative to weight; ties rotate so equal targets share the load. */
export class LeastConnections<T extends BalancedTarget> implements Balancer<T> {
  private rotate = 0;
  private readonly targets: readonly T[];
  constructor(targets: readonly T[]) {
    this.targets = targets;
  }

  pick(_key: string | undefined, at: number, exclude: ReadonlySet<T> | null, panic?: boolean): T | null {
    const now = clock(at, panic);
    const n = this.targets.length;
    let best: T | null = null;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (let k = 0; k < n; k++) {
      const t = this.targets[(this.rotate + k) % n]!;
      if (!usable(t, now, exclude)) continue;
      const load = t.active / t.weight;
      if (load < bestLoad) {
        best = t;
        bestLoad = load;
      }
    }
    this.rotate = (this.rotate + 1) % Math.max(n, 1);
    return best;
  }
}

/** Virtual nodes per unit of weight on the hash ring. */
export const VNODES_PER_WEIGHT = 160;

/**
 * Consistent hashing (a ring of virtual nodes named after each target's address, so a target keeps its
 * points whatever else changes). A key maps to the first usable target clockwise from its hash.
 */
export class ConsistentHash<T extends BalancedTarget> implements Balancer<T> {
  private readonly points: Uint32Array;
  private readonly owners: T[];
  private readonly fallback: RoundRobin<T>;

  /** `weights`: each target's weight in this ring (default: its `weight` now; the ring keeps it). */
  constructor(targets: readonly T[], weights?: readonly number[]) {
    const entries: [number, T][] = [];
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]!;
      const weight = weights?.[i] ?? t.weight;
      for (let v = 0; v < VNODES_PER_WEIGHT * weight; v++) entries.push([hash32(`${t.address}#${v}`), t]);
    }
    entries.sort((a, b) => a[0] - b[0]);
    this.points = Uint32Array.from(entries, (e) => e[0]);
    this.owners = entries.map((e) => e[1]);
    this.fallback = new RoundRobin(targets);
  }

  pick(key: string | undefined, at: number, exclude: ReadonlySet<T> | null, panic?: boolean): T | null {
    if (key === undefined) return this.fallback.pick(undefined, at, exclude, panic);
    const now = clock(at, panic);
    const n = this.points.length;
    if (n === 0) return null;
    const h = hash32(key);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    for (let i = 0; i < n; i++) {
      const t = this.owners[(lo + i) % n]!;
      if (usable(t, now, exclude)) return t;
    }
    return null;
  }
}

export type BalanceKind = 'round_robin' | 'weighted_round_robin' | 'least_connections' | 'consistent_hash';

/**
 * A balancer of `kind` over `targets`. The weighted kinds read each target's `weight` as they pick, except
 * consistent hashing, which builds its ring once from `weights` (default: the targets' weights now).
 */
export function createBalancer<T extends BalancedTarget>(
  kind: BalanceKind,
  targets: readonly T[],
  weights?: readonly number[],
): Balancer<T> {
  switch (kind) {
    case 'round_robin':
      return new RoundRobin(targets);
    case 'weighted_round_robin':
      return new SmoothWeighted(targets);
    case 'least_connections':
      return new LeastConnections(targets);
    case 'consistent_hash':
      return new ConsistentHash(targets, weights);
  }
}

export { hash32 };
