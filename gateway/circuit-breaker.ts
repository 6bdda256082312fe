/**
 * The `circuit-breaker` stock filter: a route's circuit opens when the share of failed (or slow) requests
 * over a sliding window passes a threshold, with a minimum of requests seen; while open, requests get the
 * fallback answer at once and never reach the upstream; after `openTime` a bounded number of probes go
 * through (half-open), and they decide: all succeed, the circuit closes; one fails, it opens again.
 *
 * A failure is a request the gateway could not get answered (a timeout, a refused or reset connection, a bad
 * response, no healthy target, a full pool) or an upstream answer with a status in `failureStatuses`; a
 * request the client abandoned counts as nothing. Each loop keeps its own circuit (the rates are the same
 * on every loop), and the state outlives reloads that keep the filter on the route.
 *
 * `scope: upstream` shares one circuit per upstream among the routes whose entries say so (and have the
 * same `window`): failures seen through one route open it for all. A route with `priority: low` is cut first: its requests get the
 * fallback once the failure rate reaches `shedRate`, while the circuit is still closed for the others.
 * The fallback is a static answer, or `{ upstream }`: the request goes to a degraded upstream instead.
 * Each circuit's transitions are counted in shared memory (the admin endpoint's `/stats` has them under
 * `circuits`), and the completion record's `circuit` says what the request met.
 */
import { z } from 'zod';
import type { EventLoop } from '../core/index.ts';
import type { CompletionRecord, FailureKind } from './completion.ts';
import { defineFilter, type RequestContext } from './filter.ts';
import type { SharedCounter, SharedState } from './shared-state.ts';

/** Failure kinds that are the upstream's (the client leaving, a filter's bug are not). */
const UPSTREAM_FAILURES: ReadonlySet<FailureKind> = new Set<FailureKind>([
  'upstream-timeout',
  'connect-timeout',
  'connect-failed',
  'upstream-closed',
  'bad-response',
  'no-healthy-target',
  'pool-exhausted',
]);

const staticFallback = z
  .object({
    status: z.number().int().min(200).max(599).default(503),
    body: z.string().optional(),
    contentType: z
      .string()
      .regex(/^[\t\x20-\x7e]*$/, 'invalid character in a header value')
      .default('text/plain; charset=utf-8'),
  })
  .strict();

const settings = z
  .object({
    /** One circuit for this route (`route`), or one per upstream shared by the routes that say `upstream`. */
    scope: z.enum(['route', 'upstream']).default('route'),
    /** `low`: cut first, once the failure rate reaches `shedRate` (the circuit still closed). */
    priority: z.enum(['normal', 'low']).default('normal'),
    /** Percent of failed requests at which `priority: low` routes get the fallback (default: half of `failureRate`). */
    shedRate: z.number().min(1).max(100).optional(),
    /** The sliding window the rates are measured over, in milliseconds (10 buckets). */
    window: z.number().int().min(100).max(3_600_000).default(10_000),
    /** Requests the window must hold before the circuit may open. */
    minimumRequests: z.number().int().min(1).default(20),
    /** Percent of failed requests that opens the circuit. */
    failureRate: z.number().min(1).max(100).default(50),
    /** Upstream statuses that count as failures. */
    failureStatuses: z.array(z.number().int().min(100).max(599)).default([500, 502, 503, 504]),
    /** Requests slower than `threshold` ms count as slow; `rate` percent of slow ones opens the circuit too. */
    slowCalls: z
      .object({ threshold: z.number().int().min(1), rate: z.number().min(1).max(100) })
      .strict()
      .optional(),
    /** Milliseconds the circuit stays open before probing. */
    openTime: z.number().int().min(1).max(3_600_000).default(5_000),
    /** Probes let through while half-open; all must succeed to close the circuit. */
    halfOpenRequests: z.number().int().min(1).max(1000).default(3),
    /**
     * What a request gets while the circuit is open: a static answer (a JSON error by default), or
     * `{ upstream }`, a degraded upstream that serves it instead.
     */
    fallback: z
      .union([z.object({ upstream: z.string().min(1) }).strict(), staticFallback])
      .default({ status: 503, contentType: 'text/plain; charset=utf-8' }),
  })
  .strict();

const BUCKETS = 10;

// The circuit's states.
const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;

/** One route's circuit on one loop (kept in the filter's `local` state: it outlives reloads). */
class Circuit {
  state = CLOSED;
  openedAt = 0;
  /** Bucket width (ms) the counts were made with. */
  width = 0;
  /** Half-open rounds so far: a probe counts only in its own round. */
  round = 0;
  /** Probes let through in this half-open spell, and how many of them succeeded. */
  probes = 0;
  passed = 0;
  readonly total = new Float64Array(BUCKETS);
  readonly failed = new Float64Array(BUCKETS);
  readonly slow = new Float64Array(BUCKETS);
  /** Its shared counters and admin id (set by the first entry that uses it). */
  stats: Record<keyof CircuitStats, SharedCounter> | null = null;
  id = '';
  /** The window index each bucket last counted for (stale buckets count nothing). */
  readonly epoch = new Float64Array(BUCKETS).fill(-1);

  record(now: number, width: number, failed: boolean, slow: boolean): void {
    const e = Math.floor(now / width);
    const b = e % BUCKETS;
    if (this.epoch[b] !== e) {
      this.epoch[b] = e;
      this.total[b] = this.failed[b] = this.slow[b] = 0;
    }
    this.total[b]!++;
    if (failed) this.failed[b]!++;
    if (slow) this.slow[b]!++;
  }

  /** Sums of the window ending at `now` (set by {@link sum}: no array a request). */
  sumTotal = 0;
  sumFailed = 0;
  sumSlow = 0;

  /** Adds up the requests, failures and slow ones in the window ending at `now`. */
  sum(now: number, width: number): void {
    const e = Math.floor(now / width);
    let total = 0;
    let failed = 0;
    let slow = 0;
    for (let b = 0; b < BUCKETS; b++) {
      if (this.epoch[b]! <= e - BUCKETS) continue;
      total += this.total[b]!;
      failed += this.failed[b]!;
      slow += this.slow[b]!;
    }
    this.sumTotal = total;
    this.sumFailed = failed;
    this.sumSlow = slow;
  }

  reset(): void {
    this.epoch.fill(-1);
  }
}

/** What the admin endpoint shows of a circuit, summed over the loops (shared counters). */
export interface CircuitStats {
  /** Circuits open or half-open now, over the loops (an upstream's circuits of different windows each count). */
  openLoops: number;
  opened: number;
  halfOpened: number;
  closed: number;
  /** Requests answered with the fallback (static or degraded upstream) while open or half-open. */
  fallbacks: number;
  /** Requests of `priority: low` routes cut while the circuit was closed. */
  shed: number;
}

/** The shared counters of the circuit `id` (`route:NAME#N` or `upstream:NAME`). */
function circuitCounters(shared: SharedState, id: string): Record<keyof CircuitStats, SharedCounter> {
  const c = (what: string) => shared.counter(`circuit|${id}|${what}`);
  return {
    openLoops: c('open-loops'),
    opened: c('opened'),
    halfOpened: c('half-opened'),
    closed: c('closed'),
    fallbacks: c('fallbacks'),
    shed: c('shed'),
  };
}

/** The figures of circuit `id` (main thread or a loop). */
export function circuitStats(shared: SharedState, id: string): CircuitStats {
  const c = circuitCounters(shared, id);
  return {
    openLoops: c.openLoops.get(),
    opened: c.opened.get(),
    halfOpened: c.halfOpened.get(),
    closed: c.closed.get(),
    fallbacks: c.fallbacks.get(),
    shed: c.shed.get(),
  };
}

/** The ids of the circuits a route's `circuit-breaker` entries keep, given the upstreams it may use. */
export function circuitIds(
  route: string,
  entries: readonly { scope?: unknown }[],
  upstreams: string[],
): string[] {
  const ids: string[] = [];
  entries.forEach((e, occurrence) => {
    if (e.scope === 'upstream') ids.push(...upstreams.map((u) => `upstream:${u}`));
    else ids.push(`route:${route}#${occurrence}`);
  });
  return ids;
}

/** Each loop's upstream-scoped circuits (they outlive reloads, as route circuits do in `local`). */
const upstreamCircuits = new WeakMap<EventLoop, Map<string, Circuit>>();

/** `circuit-breaker`: see the module comment. */
export const circuitBreaker = defineFilter({
  name: 'circuit-breaker',
  settings,
  upstreamsOf: (s): Record<string, string> =>
    'upstream' in s.fallback ? { 'fallback.upstream': s.fallback.upstream } : {},
  create(s, setup) {
    const loop = setup.loop;
    const width = s.window / BUCKETS;
    const failing = new Set(s.failureStatuses);
    const shedRate = s.shedRate ?? s.failureRate / 2;
    const fallbackUpstream = 'upstream' in s.fallback ? s.fallback.upstream : null;
    const staticAnswer = 'upstream' in s.fallback ? null : s.fallback;
    /** A circuit as this entry counts it: its settings' window, its shared counters. */
    const prepare = (c: Circuit, id: string): Circuit => {
      // A reload that changes the window: outcomes counted in the old buckets mean nothing in the new ones.
      if (c.width !== width) {
        c.reset();
        c.width = width;
      }
      if (c.stats === null) c.stats = circuitCounters(setup.shared, id);
      c.id = id;
      return c;
    };
    let routeCircuit: Circuit | null = null;
    if (s.scope === 'route') {
      // One circuit per breaker entry of the route (a second one, for slow calls say, counts apart).
      const slot = `circuit:${setup.occurrence}`;
      let c = setup.local.get(slot) as Circuit | undefined;
      if (c === undefined) {
        c = new Circuit();
        setup.local.set(slot, c);
      }
      routeCircuit = prepare(c, `route:${setup.route}#${setup.occurrence}`);
    }
    let byUpstream = upstreamCircuits.get(loop);
    if (byUpstream === undefined) {
      byUpstream = new Map();
      upstreamCircuits.set(loop, byUpstream);
    }
    const shared = byUpstream;
    /** This entry's upstream circuits, by upstream name. */
    const mine = new Map<string, Circuit>();
    const circuitOf = (ctx: RequestContext): Circuit => {
      if (routeCircuit !== null) return routeCircuit;
      const name = ctx.upstreamName;
      let c = mine.get(name);
      if (c === undefined) {
        // One circuit an upstream, window and loop: entries with the same window share what they count
        // (each judges it by its own thresholds); another window counts apart. Its figures on /stats are
        // the upstream's, summed.
        const key = `${name}\u0000${s.window}`;
        c = shared.get(key);
        if (c === undefined) {
          c = new Circuit();
          shared.set(key, c);
          prepare(c, `upstream:${name}`);
        }
        mine.set(name, c);
      }
      return c;
    };
    /** The circuit each request took at `onRequest` (a later filter may move it to another upstream). */
    const taken = new WeakMap<RequestContext, Circuit>();

    /** Requests let through as probes, with the half-open round that let them (only that round judges them). */
    const probes = new WeakMap<RequestContext, number>();
    /** Requests sent to the degraded upstream: their outcomes say nothing of the circuit's upstream. */
    const degraded = new WeakSet<RequestContext>();
    /** Forgets `ctx` as a probe; true when it was one of the current round. */
    const takeProbe = (c: Circuit, ctx: RequestContext): boolean => {
      const round = probes.get(ctx);
      if (round === undefined) return false;
      probes.delete(ctx);
      return round === c.round && c.state === HALF_OPEN;
    };
    const open = (c: Circuit, now: number, why: string) => {
      if (c.state === CLOSED) c.stats!.openLoops.add(1);
      c.state = OPEN;
      c.openedAt = now;
      c.stats!.opened.add(1);
      loop.log.warn('circuit opened', { circuit: c.id, route: setup.route, why, openTime: s.openTime });
    };
    const fallback = (c: Circuit, ctx: RequestContext, now: number, shed: boolean) => {
      ctx.record.circuit = shed ? 'shed' : 'open';
      (shed ? c.stats!.shed : c.stats!.fallbacks).add(1);
      if (fallbackUpstream !== null) {
        degraded.add(ctx);
        ctx.useUpstream(fallbackUpstream);
        return undefined;
      }
      const a = staticAnswer!;
      const retry = shed ? 1 : Math.max(1, Math.ceil((c.openedAt + s.openTime - now) / 1000));
      const headers = { 'retry-after': String(retry), 'cache-control': 'no-store' };
      if (a.body === undefined)
        ctx.respond(
          a.status,
          { error: shed ? 'shed' : 'circuit open', status: a.status, route: setup.route },
          headers,
        );
      else ctx.respond(a.status, a.body, { ...headers, 'content-type': a.contentType });
      return false as const;
    };
    return {
      onRequest(ctx) {
        const c = circuitOf(ctx);
        if (routeCircuit === null) taken.set(ctx, c);
        const now = loop.now();
        if (c.state === OPEN) {
          if (now - c.openedAt < s.openTime) return fallback(c, ctx, now, false);
          c.state = HALF_OPEN;
          c.round++;
          c.probes = c.passed = 0;
          c.stats!.halfOpened.add(1);
          loop.log.info('circuit half-open', { circuit: c.id, route: setup.route });
        }
        if (c.state === HALF_OPEN) {
          if (c.probes >= s.halfOpenRequests) return fallback(c, ctx, now, false);
          c.probes++;
          probes.set(ctx, c.round);
          ctx.record.circuit = 'half-open';
          return undefined;
        }
        if (s.priority === 'low') {
          c.sum(now, c.width);
          if (c.sumTotal >= s.minimumRequests && (c.sumFailed * 100) / c.sumTotal >= shedRate)
            return fallback(c, ctx, now, true);
        }
        ctx.record.circuit = 'closed';
        return undefined;
      },
      onComplete(ctx, record: CompletionRecord) {
        if (degraded.has(ctx)) return; // served by the degraded upstream
        const c = routeCircuit ?? taken.get(ctx);
        if (c === undefined) return;
        taken.delete(ctx);
        if (record.answeredBy === 'filter' && record.error === null) {
          // Answered by a filter (this one's fallback, an auth refusal): says nothing of the upstream. A
          // probe a later filter answered gives its place back.
          if (takeProbe(c, ctx)) c.probes--;
          return;
        }
        const now = loop.now();
        const error = record.error;
        if (error !== null && !UPSTREAM_FAILURES.has(error)) {
          if (takeProbe(c, ctx)) c.probes--;
          return; // the client left, or a filter failed: not the upstream's doing
        }
        const failed = error !== null || (record.answeredBy === 'upstream' && failing.has(record.status));
        const slow = s.slowCalls !== undefined && record.totalMs >= s.slowCalls.threshold;
        const probe = probes.has(ctx);
        if (probe) {
          if (!takeProbe(c, ctx)) return; // a probe of an earlier round: that round is over
          if (failed || slow) open(c, now, failed ? 'a probe failed' : 'a probe was slow');
          else if (++c.passed >= s.halfOpenRequests) {
            c.state = CLOSED;
            c.reset();
            c.stats!.openLoops.add(-1);
            c.stats!.closed.add(1);
            loop.log.info('circuit closed', { circuit: c.id, route: setup.route });
          }
          return;
        }
        if (c.state !== CLOSED) return;
        c.record(now, c.width, failed, slow);
        c.sum(now, c.width);
        const total = c.sumTotal;
        const failures = c.sumFailed;
        const slows = c.sumSlow;
        if (total < s.minimumRequests) return;
        if ((failures * 100) / total >= s.failureRate) open(c, now, `${failures} of ${total} failed`);
        else if (s.slowCalls !== undefined && (slows * 100) / total >= s.slowCalls.rate)
          open(c, now, `${slows} of ${total} slow`);
      },
    };
  },
});
