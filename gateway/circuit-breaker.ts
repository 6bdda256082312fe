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
 */
import { z } from 'zod';
import type { CompletionRecord, FailureKind } from './completion.ts';
import { defineFilter, type RequestContext } from './filter.ts';

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

const settings = z
  .object({
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
    /** What a request gets while the circuit is open (a JSON error by default). */
    fallback: z
      .object({
        status: z.number().int().min(200).max(599).default(503),
        body: z.string().optional(),
        contentType: z
          .string()
          .regex(/^[\t\x20-\x7e]*$/, 'invalid character in a header value')
          .default('text/plain; charset=utf-8'),
      })
      .strict()
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

/** `circuit-breaker`: see the module comment. */
export const circuitBreaker = defineFilter({
  name: 'circuit-breaker',
  settings,
  create(s, setup) {
    const loop = setup.loop;
    const width = s.window / BUCKETS;
    const failing = new Set(s.failureStatuses);
    // One circuit per breaker entry of the route (a second one, for slow calls say, counts apart).
    const slot = `circuit:${setup.occurrence}`;
    let circuit = setup.local.get(slot) as Circuit | undefined;
    if (circuit === undefined) {
      circuit = new Circuit();
      setup.local.set(slot, circuit);
    }
    const c = circuit;
    // A reload that changes the window: outcomes counted in the old buckets mean nothing in the new ones.
    if (c.width !== width) {
      c.reset();
      c.width = width;
    }
    /** Requests let through as probes, with the half-open round that let them (only that round judges them). */
    const probes = new WeakMap<RequestContext, number>();
    /** Forgets `ctx` as a probe; true when it was one of the current round. */
    const takeProbe = (ctx: RequestContext): boolean => {
      const round = probes.get(ctx);
      if (round === undefined) return false;
      probes.delete(ctx);
      return round === c.round && c.state === HALF_OPEN;
    };
    const open = (now: number, why: string) => {
      c.state = OPEN;
      c.openedAt = now;
      loop.log.warn('circuit opened', { route: setup.route, why, openTime: s.openTime });
    };
    const fallback = (ctx: RequestContext, now: number) => {
      const retry = Math.max(1, Math.ceil((c.openedAt + s.openTime - now) / 1000));
      const headers = { 'retry-after': String(retry), 'cache-control': 'no-store' };
      if (s.fallback.body === undefined)
        ctx.respond(
          s.fallback.status,
          { error: 'circuit open', status: s.fallback.status, route: setup.route },
          headers,
        );
      else
        ctx.respond(s.fallback.status, s.fallback.body, {
          ...headers,
          'content-type': s.fallback.contentType,
        });
      return false as const;
    };
    return {
      onRequest(ctx) {
        const now = loop.now();
        if (c.state === OPEN) {
          if (now - c.openedAt < s.openTime) return fallback(ctx, now);
          c.state = HALF_OPEN;
          c.round++;
          c.probes = c.passed = 0;
          loop.log.info('circuit half-open', { route: setup.route });
        }
        if (c.state === HALF_OPEN) {
          if (c.probes >= s.halfOpenRequests) return fallback(ctx, now);
          c.probes++;
          probes.set(ctx, c.round);
        }
        return undefined;
      },
      onComplete(ctx, record: CompletionRecord) {
        if (record.answeredBy === 'filter' && record.error === null) {
          // Answered by a filter (this one's fallback, an auth refusal): says nothing of the upstream. A
          // probe a later filter answered gives its place back.
          if (takeProbe(ctx)) c.probes--;
          return;
        }
        const now = loop.now();
        const error = record.error;
        if (error !== null && !UPSTREAM_FAILURES.has(error)) {
          if (takeProbe(ctx)) c.probes--;
          return; // the client left, or a filter failed: not the upstream's doing
        }
        const failed = error !== null || (record.answeredBy === 'upstream' && failing.has(record.status));
        const slow = s.slowCalls !== undefined && record.totalMs >= s.slowCalls.threshold;
        const probe = probes.has(ctx);
        if (probe) {
          if (!takeProbe(ctx)) return; // a probe of an earlier round: that round is over
          if (failed || slow) open(now, failed ? 'a probe failed' : 'a probe was slow');
          else if (++c.passed >= s.halfOpenRequests) {
            c.state = CLOSED;
            c.reset();
            loop.log.info('circuit closed', { route: setup.route });
          }
          return;
        }
        if (c.state !== CLOSED) return;
        c.record(now, width, failed, slow);
        c.sum(now, width);
        const total = c.sumTotal;
        const failures = c.sumFailed;
        const slows = c.sumSlow;
        if (total < s.minimumRequests) return;
        if ((failures * 100) / total >= s.failureRate) open(now, `${failures} of ${total} failed`);
        else if (s.slowCalls !== undefined && (slows * 100) / total >= s.slowCalls.rate)
          open(now, `${slows} of ${total} slow`);
      },
    };
  },
});
