/**
 * The `rate-limit` stock filter: several limits per route, all of which must pass, each a token bucket
 * (`rate` a second, `burst` at once) or a sliding window (`limit` in any `window` ms, estimated from two
 * fixed windows as APISIX's `window_type=sliding` does), plus a bound on requests in flight. Keys combine
 * the client address, header and cookie values, the route and its business domain (`[ip, {header:
 * x-app-key}]` is one bucket per address and app key). State lives in the gateway's shared key table, so a
 * limit is one budget across every loop, and a flood of distinct keys evicts the least recently used ones
 * (counted) instead of growing memory.
 *
 * With `redis`, the limits are cluster-wide: every gateway process naming that Redis spends one budget
 * (leased in batches; see rate-limit-redis.ts). `concurrency` stays a budget of the process.
 *
 * A refused request is answered 429 with `Retry-After`, the IETF draft's `RateLimit-Policy` and `RateLimit`
 * fields (draft-ietf-httpapi-ratelimit-headers: `"name";q=100;w=1` and `"name";r=0;t=1`) and a JSON body
 * naming the limit; it never reaches the upstream.
 */
import { z } from 'zod';
import type { Request } from '../protocols/http1/index.ts';
import { headerName } from './config-fields.ts';
import { defineFilter, type RequestContext } from './filter.ts';
import {
  acquireStore,
  type LeaseAnswer,
  type RedisLimitStore,
  RedisUnavailable,
  redisCounters,
  redisSettings,
  releaseStore,
} from './rate-limit-redis.ts';
import {
  hashKey,
  KEY_SEED,
  type KeyHash,
  LEASE_DENIED,
  LEASE_TAKEN,
  type SharedKeyTable,
} from './shared-keys.ts';
import { cookieValue } from './upstream.ts';

const keyPart = z.union([
  z.enum(['ip', 'route', 'domain']),
  z.object({ header: headerName }).strict(),
  z.object({ cookie: z.string().min(1) }).strict(),
]);

/** A policy name: a token, so it stands in the RateLimit fields' quoted strings as it is. */
const policyName = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, 'a limit name is letters, digits, ".", "_" or "-"');

const limit = z.discriminatedUnion('algorithm', [
  z
    .object({
      algorithm: z.literal('token-bucket'),
      name: policyName.optional(),
      key: z.array(keyPart).min(1).default(['ip']),
      /** Requests a second, sustained. */
      rate: z.number().positive().max(1_000_000),
      /** Requests at once after a quiet spell (default: one second's worth). */
      burst: z.number().int().min(1).max(10_000_000).optional(),
    })
    .strict(),
  z
    .object({
      algorithm: z.literal('sliding-window'),
      name: policyName.optional(),
      key: z.array(keyPart).min(1).default(['ip']),
      /** Requests allowed in any window. */
      limit: z.number().int().min(1).max(1_000_000_000),
      /** The window, in milliseconds. */
      window: z.number().int().min(1).max(86_400_000),
    })
    .strict(),
]);

const settings = z
  .object({
    limits: z.array(limit).default([]),
    /** Keep the limits in this Redis, shared by every gateway process that names it. */
    redis: redisSettings.optional(),
    /** Requests in flight at once per key (the upstream's concurrency a client may hold). */
    concurrency: z
      .object({
        name: policyName.default('concurrency'),
        key: z.array(keyPart).min(1).default(['ip']),
        max: z.number().int().min(1).max(1_000_000),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine(
    (s) => s.limits.length > 0 || s.concurrency !== undefined,
    'a rate-limit filter needs limits or concurrency',
  )
  .superRefine((s, ctx) => {
    const names = new Set<string>();
    s.limits.forEach((l, i) => {
      const name = l.name ?? `limit${i}`;
      if (names.has(name))
        ctx.addIssue({ code: 'custom', path: ['limits', i, 'name'], message: `"${name}" twice` });
      names.add(name);
    });
  });

type KeyPart = z.infer<typeof keyPart>;

/** Builds a request's key hash for `parts`, continuing from `seed` (the route and the limit). */
function keyOf(parts: readonly KeyPart[], seed: KeyHash, ctx: RequestContext, out: KeyHash): KeyHash {
  let h: KeyHash = seed;
  const req: Request = ctx.req;
  for (const part of parts) {
    let value: string | undefined;
    if (part === 'ip') value = req.remoteAddress;
    else if (part === 'route') value = ctx.route.name;
    else if (part === 'domain') value = ctx.route.domain;
    else if ('header' in part) value = req.header(part.header);
    else value = cookieValue(req.header('cookie'), part.cookie);
    // A separator no value holds keeps ("a", "bc") and ("ab", "c") apart; an absent value is "".
    h = hashKey(hashKey(h, '\u0000', out), value ?? '', out);
  }
  return h;
}

interface CompiledLimit {
  readonly name: string;
  readonly parts: readonly KeyPart[];
  readonly seed: KeyHash;
  readonly check: (table: SharedKeyTable, key: KeyHash) => ReturnType<SharedKeyTable['tokenBucket']>;
  /** `"name";q=...;w=...` for RateLimit-Policy. */
  readonly policy: string;
  /** With `redis`: asks the store for `tokens` of this limit's `key`. */
  readonly remote: ((store: RedisLimitStore, key: string, tokens: number) => Promise<LeaseAnswer>) | null;
  /** Tokens a lease asks for, and at most (the burst, or the window's limit). */
  readonly lease: number;
  readonly maxLease: number;
  /** Tokens left below which the next lease is fetched ahead (0: leases too small to split). */
  readonly low: number;
}

/** A lease request of one loop, and the requests waiting on it. */
interface LeaseFetch {
  waiters: number;
  /** Tokens granted for a key the shared table could not hold, handed out to the waiters directly. */
  direct: number;
  done: Promise<void>;
}

/** Lease rounds a request may wait through (other requests of the process may spend each lease first). */
const LEASE_ROUNDS = 4;

const hex = (n: number) => (n >>> 0).toString(16).padStart(8, '0');

/** `rate-limit`: see the module comment. */
export const rateLimit = defineFilter({
  name: 'rate-limit',
  settings,
  create(s, setup) {
    const table = setup.shared.keys;
    // A budget is the route's, unless its key names the domain: then the domain's routes that use a limit
    // of the same name share it.
    const seedOf = (what: string, parts: readonly KeyPart[]) =>
      hashKey(
        KEY_SEED,
        `${parts.includes('domain') ? '' : setup.route}\u0000${setup.occurrence}\u0000${what}`,
        { a: 0, b: 0 },
      );
    /** The place in flight each request of this instance holds, to give back when it completes. */
    const held = new WeakMap<RequestContext, KeyHash & { journaled: boolean }>();
    const redis = s.redis;
    // A lease of 2% of a second's budget: about 50 Redis calls a second per busy key. At most a tenth of
    // the burst (or the window's limit): several loops holding leases must not park the whole burst while
    // the others refuse.
    const leaseOf = (perSecond: number, max: number) =>
      Math.max(1, Math.min(Math.floor(max / 10), redis?.lease.tokens ?? Math.floor(perSecond * 0.02)));
    /** Tokens left below which the next lease is fetched ahead: half of one big enough to split. */
    const lowOf = (lease: number) => (lease >= 4 ? lease / 2 : 0);
    // Leases live under their own seed: a reload between local and Redis must not read one as the other.
    const where = redis === undefined ? '' : 'redis\u0000';
    const limits: CompiledLimit[] = s.limits.map((l, i) => {
      const name = l.name ?? `limit${i}`;
      if (l.algorithm === 'token-bucket') {
        const rate = l.rate;
        const burst = l.burst ?? Math.max(1, Math.ceil(rate));
        const lease = leaseOf(rate, burst);
        return {
          name,
          parts: l.key,
          seed: seedOf(`${where}tb\u0000${name}`, l.key),
          check: (t, k) => t.tokenBucket(k, rate, burst),
          remote: redis === undefined ? null : (store, key, n) => store.tokenBucket(key, rate, burst, n),
          lease,
          maxLease: burst,
          low: lowOf(lease),
          // The sustained rate as a quota per window: q a second, or 1 per w seconds below one a second.
          policy:
            rate >= 1 ? `"${name}";q=${Math.round(rate)};w=1` : `"${name}";q=1;w=${Math.round(1 / rate)}`,
        };
      }
      const { limit: max, window } = l;
      const lease = leaseOf((max * 1000) / window, max);
      return {
        name,
        parts: l.key,
        seed: seedOf(`${where}sw\u0000${name}`, l.key),
        check: (t, k) => t.slidingWindow(k, max, window),
        remote: redis === undefined ? null : (store, key, n) => store.slidingWindow(key, max, window, n),
        lease,
        maxLease: max,
        low: lowOf(lease),
        policy: `"${name}";q=${max};w=${Math.max(1, Math.round(window / 1000))}`,
      };
    });
    const concurrency = s.concurrency;
    const concurrencySeed =
      concurrency === undefined ? null : seedOf(`cc\u0000${concurrency.name}`, concurrency.key);
    const rejected = setup.shared.counter(`rate-limit|${setup.route}|rejected`);
    const scratch: KeyHash = { a: 0, b: 0 };

    const refuse = (ctx: RequestContext, name: string, policy: string, retryMs: number, resetMs: number) => {
      rejected.add(1);
      const retry = Math.max(1, Math.ceil(retryMs / 1000));
      ctx.respond(
        429,
        { error: 'rate limited', status: 429, limit: name, retryAfter: retry },
        {
          'retry-after': String(retry),
          'ratelimit-policy': policy,
          ratelimit: `"${name}";r=0;t=${Math.max(1, Math.ceil(resetMs / 1000))}`,
          'cache-control': 'no-store',
        },
      );
      return false as const;
    };

    const admitConcurrency = (ctx: RequestContext): false | undefined => {
      if (concurrency === undefined) return undefined;
      const key = keyOf(concurrency.key, concurrencySeed!, ctx, scratch);
      const outcome = table.acquire(key, concurrency.max);
      if (!outcome.allowed)
        return refuse(ctx, concurrency.name, `"${concurrency.name}";q=${concurrency.max}`, 1000, 1000);
      if (!outcome.untracked) held.set(ctx, { a: key.a, b: key.b, journaled: outcome.journaled });
      return undefined;
    };

    // The Redis side: this loop's connection, its counters, and the lease requests on their way (one a
    // key: requests arriving meanwhile join it rather than ask again).
    const store = redis === undefined ? null : acquireStore(setup.loop, redis, setup.shared);
    const counters = redis === undefined ? null : redisCounters(setup.shared);
    const pending = new Map<string, LeaseFetch>();

    /**
     * Joins the lease request on its way for `l`'s `key`, or starts one. The call goes out a microtask
     * later, so the requests that found the lease empty in the same turn are counted in and it asks for
     * a token each (at least a lease).
     */
    const joinFetch = (l: CompiledLimit, key: KeyHash): LeaseFetch => {
      const id = `${redis!.prefix}${l.name}:${hex(key.a)}${hex(key.b)}`;
      const f = pending.get(id);
      if (f !== undefined) {
        f.waiters++;
        return f;
      }
      const k = { a: key.a, b: key.b };
      const fetch: LeaseFetch = { waiters: 1, direct: 0, done: null as unknown as Promise<void> };
      fetch.done = Promise.resolve()
        .then(() => l.remote!(store!, id, Math.min(l.maxLease, Math.max(l.lease, fetch.waiters))))
        .then(
          (answer) => {
            pending.delete(id);
            if (answer.granted <= 0) table.leaseDeny(k, Math.max(1, answer.retryMs));
            // A key the table has no slot for: its waiters share the grant here.
            else if (!table.leaseGrant(k, answer.granted, redis!.lease.ttl)) fetch.direct = answer.granted;
          },
          (e: unknown) => {
            pending.delete(id);
            throw e;
          },
        );
      pending.set(id, fetch);
      return fetch;
    };

    /**
     * Fetches the next lease of `l`'s `key` in the background (this request took the token that left the
     * lease low and was handed the refill): requests keep spending the old one meanwhile.
     */
    const refill = (l: CompiledLimit, key: KeyHash): void => {
      const k = { a: key.a, b: key.b };
      joinFetch(l, k).done.catch(() => table.leaseRefillFailed(k)); // counted and logged by the store
    };
    const refillMs = redis === undefined ? 0 : redis.timeout + 50;

    /** Answers a request Redis could not decide for (failed, too slow, breaker open) as configured. */
    const unavailable = (ctx: RequestContext, l: CompiledLimit): false | undefined => {
      if (redis!.onFailure === 'open') {
        counters!.failOpen.add(1);
        return undefined;
      }
      counters!.failClosed.add(1);
      rejected.add(1);
      ctx.respond(
        503,
        { error: 'rate limit unavailable', status: 503, limit: l.name },
        { 'retry-after': '1', 'cache-control': 'no-store' },
      );
      return false;
    };

    /** Limits from `from` on, for a request that found no lease of limit `from`'s key. */
    const viaRedis = async (
      ctx: RequestContext,
      from: number,
      first: KeyHash,
    ): Promise<false | undefined> => {
      for (let i = from; i < limits.length; i++) {
        const l = limits[i]!;
        const started = setup.loop.now();
        const key = i === from ? first : { ...keyOf(l.parts, l.seed, ctx, scratch) };
        let code = table.leaseTake(key, l.low, refillMs);
        let claimed = table.last.untracked;
        for (let round = 0; code !== LEASE_TAKEN && code !== LEASE_DENIED; round++) {
          // Another round (other requests spent what Redis granted) only while the limit's first call
          // was answered within `timeout`: a request waits on Redis two calls a limit at most. Redis
          // answered every round so far, so running out is a contended budget: refused as by Redis, not
          // admitted as if Redis had failed.
          if (round > 0 && (round === LEASE_ROUNDS || setup.loop.now() - started >= redis!.timeout))
            return refuse(ctx, l.name, l.policy, 1000, 1000);
          const fetch = joinFetch(l, key);
          try {
            await fetch.done;
          } catch (e) {
            if (!(e instanceof RedisUnavailable)) throw e;
            if (ctx.signal.aborted) return false;
            if (unavailable(ctx, l) === false) return false;
            code = LEASE_TAKEN;
            break;
          }
          if (ctx.signal.aborted) return false;
          if (fetch.direct > 0) {
            fetch.direct--;
            code = LEASE_TAKEN;
          } else {
            code = table.leaseTake(key, l.low, refillMs);
            claimed = table.last.untracked;
          }
        }
        if (claimed) refill(l, key);
        if (code !== LEASE_TAKEN)
          return refuse(ctx, l.name, l.policy, table.last.retryMs, table.last.retryMs);
      }
      return admitConcurrency(ctx);
    };

    return {
      onRequest(ctx) {
        for (let i = 0; i < limits.length; i++) {
          const l = limits[i]!;
          const key = keyOf(l.parts, l.seed, ctx, scratch);
          if (l.remote === null) {
            const outcome = l.check(table, key);
            if (!outcome.allowed) return refuse(ctx, l.name, l.policy, outcome.retryMs, outcome.resetMs);
            continue;
          }
          const code = table.leaseTake(key, l.low, refillMs);
          if (code === LEASE_TAKEN) {
            if (table.last.untracked) refill(l, key);
            continue;
          }
          if (code === LEASE_DENIED)
            return refuse(ctx, l.name, l.policy, table.last.retryMs, table.last.retryMs);
          return viaRedis(ctx, i, { a: key.a, b: key.b });
        }
        return admitConcurrency(ctx);
      },
      close() {
        if (store !== null) releaseStore(setup.loop, redis!, store);
      },
      onComplete(ctx) {
        const key = held.get(ctx);
        if (key === undefined) return;
        held.delete(ctx);
        table.release(key, key.journaled);
      },
    };
  },
});
