/**
 * Canary and A/B routing: which upstream of a route serves a request. Rules first, in order (a header or
 * cookie value, a range of hash buckets of the user's key, or all of these together); then, for requests
 * no rule took, a weighted split by the same key; else the route's `upstream`. Every choice is a pure
 * function of the request and the configuration: the same user lands on the same side on every loop and
 * process, before and after a reload, and no state drifts (unlike weighted round robin's).
 *
 * The key hashes with the engine's `hash32` (FNV-1a with murmur3's finaliser). Rule buckets are that hash
 * modulo 100; the split uses the hash mixed once more, so the users a bucket rule took and the split's sides
 * are independent of each other.
 */
import { z } from 'zod';
import { hash32 } from '../core/index.ts';
import type { Request } from '../protocols/http1/index.ts';
import { headerName, headerRecord } from './config-fields.ts';
import { cookieValue, type Upstream } from './upstream.ts';

const bucket = z.number().int().min(0).max(99);

const trafficRule = z
  .object({
    /** Fields whose values must all be exactly these (names case-insensitive). */
    headers: headerRecord(z.string()).optional(),
    /** Cookies whose values must all be exactly these. */
    cookies: z.record(z.string().min(1), z.string()).optional(),
    /** Hash buckets of the user's key, both ends included (`[0, 9]`: a tenth of the users). */
    buckets: z
      .tuple([bucket, bucket])
      .refine(([from, to]) => from <= to, 'buckets are [from, to] with from <= to')
      .optional(),
    /** Where a request that matches goes. */
    upstream: z.string().min(1),
  })
  .strict()
  .refine(
    (r) => r.headers !== undefined || r.cookies !== undefined || r.buckets !== undefined,
    'a rule matches on headers, cookies or buckets',
  );

/**
 * A route's traffic split (`routes[].traffic`). `key` says who a user is: a header (a user id) or a
 * cookie, falling back to the client's address when the request has neither; `{ clientIp: true }` uses
 * the address alone.
 */
export const trafficSettings = z
  .object({
    key: z
      .union([
        z.object({ header: headerName }).strict(),
        z.object({ cookie: z.string().min(1) }).strict(),
        z.object({ clientIp: z.literal(true) }).strict(),
      ])
      .default({ clientIp: true }),
    rules: z.array(trafficRule).default([]),
    /** Requests no rule took go to these in proportion to their weights (else to the route's upstream). */
    split: z
      .array(z.object({ upstream: z.string().min(1), weight: z.number().int().min(0).max(10_000) }).strict())
      .min(1)
      .refine((s) => s.some((x) => x.weight > 0), 'a split needs a weight above 0')
      .optional(),
  })
  .strict();

export type TrafficSettings = z.infer<typeof trafficSettings>;

/** The upstream names a traffic split may send requests to (for validation and for relays). */
export function trafficUpstreams(settings: TrafficSettings): string[] {
  return [...settings.rules.map((r) => r.upstream), ...(settings.split ?? []).map((s) => s.upstream)];
}

/** murmur3's 32-bit finaliser once more: a second, independent-looking hash from the first. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

interface CompiledRule {
  readonly headers: readonly [string, string][];
  readonly cookies: readonly [string, string][];
  readonly from: number;
  readonly to: number;
  readonly upstream: Upstream;
}

/** One route's compiled split, on one loop. */
export class TrafficSplit {
  private readonly key: TrafficSettings['key'];
  private readonly rules: readonly CompiledRule[];
  private readonly sides: readonly Upstream[];
  /** Cumulative weights, one per side; the last is the total. */
  private readonly bounds: readonly number[];
  private readonly fallback: Upstream;
  /** Some rule or the split needs the key's hash. */
  private readonly hashes: boolean;

  /** `upstreams` has every name the settings use (the configuration was validated). */
  constructor(settings: TrafficSettings, upstreams: ReadonlyMap<string, Upstream>, fallback: Upstream) {
    const get = (name: string) => upstreams.get(name)!;
    this.key = settings.key;
    this.rules = settings.rules.map((r) => ({
      headers: Object.entries(r.headers ?? {}).map(([n, v]): [string, string] => [n.toLowerCase(), v]),
      cookies: Object.entries(r.cookies ?? {}),
      from: r.buckets?.[0] ?? 0,
      to: r.buckets?.[1] ?? 99,
      upstream: get(r.upstream),
    }));
    const split = (settings.split ?? []).filter((s) => s.weight > 0);
    this.sides = split.map((s) => get(s.upstream));
    let total = 0;
    this.bounds = split.map((s) => (total += s.weight));
    this.fallback = fallback;
    this.hashes = split.length > 0 || settings.rules.some((r) => r.buckets !== undefined);
  }

  /** Every upstream this split may choose, the route's own included. */
  upstreams(): Upstream[] {
    return [...new Set([this.fallback, ...this.rules.map((r) => r.upstream), ...this.sides])];
  }

  /** Who the request's user is (see {@link trafficSettings}). */
  userKey(req: Request): string {
    const on = this.key;
    let key: string | undefined;
    if ('header' in on) key = req.header(on.header);
    else if ('cookie' in on) key = cookieValue(req.header('cookie'), on.cookie);
    return key === undefined || key === '' ? req.remoteAddress : key;
  }

  /** The upstream that serves `req`. */
  choose(req: Request): Upstream {
    const h = this.hashes ? hash32(this.userKey(req)) : 0;
    const b = h % 100;
    rules: for (const r of this.rules) {
      if (b < r.from || b > r.to) continue;
      for (const [name, value] of r.headers) if (req.header(name) !== value) continue rules;
      if (r.cookies.length > 0) {
        const cookie = req.header('cookie');
        for (const [name, value] of r.cookies) if (cookieValue(cookie, name) !== value) continue rules;
      }
      return r.upstream;
    }
    const bounds = this.bounds;
    if (bounds.length === 0) return this.fallback;
    const at = mix(h) % bounds[bounds.length - 1]!;
    for (let i = 0; i < bounds.length; i++) if (at < bounds[i]!) return this.sides[i]!;
    return this.fallback; // unreachable: `at` is below the total
  }
}
