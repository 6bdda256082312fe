/**
 * Cluster-wide rate limits: a `rate-limit` filter with `redis` keeps its buckets and windows in Redis, so
 * every gateway process (and machine) that names the same Redis spends one budget. Each update is one
 * atomic Lua script on Redis's own clock (`TIME`), so processes with skewed clocks agree.
 *
 * A request does not wait on Redis each time: a process asks for a lease of several tokens at once and
 * spends them from its shared key table (all loops of the process draw on one lease), so Redis sees about
 * `rate / lease` calls a second per key. The store grants what it has up to the ask, and refuses only when
 * it has not one token, saying when a whole lease will fit; the process refuses locally until then (a
 * flood costs Redis a call or two per process per refusal spell, not one per request). The trade, measured in
 * the README: the cluster never admits more than the limit plus about one lease per loop of each process
 * in any burst (loops that find the lease empty at the same moment each fetch one), and a lease that
 * expires unspent (`lease.ttl`) is budget no one used.
 *
 * Requests of one loop that find a key's lease empty wait on one call, which asks for a token each of
 * them (at least a lease); another round starts only while the limit's first was answered within
 * `timeout`, so a request waits on Redis about `timeout` a limit at most (two calls in the worst case).
 *
 * Redis down or slow: each call has a timeout; `failures` calls failing in a row open a breaker that stops
 * calling for `openTime`, then one probe decides. While Redis cannot answer, `onFailure` decides: `open`
 * admits (counted as `failOpen`), `closed` answers 503 (`failClosed`). Each change of the breaker's state
 * is logged; the counts are on the admin endpoint's `/stats` (`rateLimits.redis`).
 */
import { Redis } from 'ioredis';
import { z } from 'zod';
import type { EventLoop } from '../core/index.ts';
import { duration } from './config-fields.ts';
import type { SharedCounter, SharedState } from './shared-state.ts';

/** The `redis` setting of a `rate-limit` filter. */
export const redisSettings = z
  .object({
    /**
     * `redis://[user:password@]host:port[/db]`. No query string: ioredis would read options (a password
     * among them) from it, past this schema and the logs' redaction.
     */
    url: z.string().refine((u) => {
      try {
        const parsed = new URL(u);
        return (
          parsed.protocol === 'redis:' &&
          parsed.hostname !== '' &&
          parsed.search === '' &&
          parsed.hash === '' &&
          /^\/?(\d{1,5})?$/.test(parsed.pathname)
        );
      } catch {
        return false;
      }
    }, 'a redis://[user:password@]host:port[/db] URL (db a number, no query string)'),
    /** Prefix of the keys the limits keep in Redis. */
    prefix: z.string().max(200).default('netloom:rl:'),
    /** Milliseconds a request waits for Redis at most. */
    timeout: duration.min(1).max(60_000).default(50),
    /** What a request gets while Redis cannot answer: `open` admits it, `closed` answers 503. */
    onFailure: z.enum(['open', 'closed']).default('open'),
    lease: z
      .object({
        /**
         * Tokens asked for at once (default: 2% of a second's rate, or of the window's limit; at least 1, at
         * most a tenth of the burst or limit).
         */
        tokens: z.number().int().min(1).max(100_000).optional(),
        /** Milliseconds a lease stays valid; what is left then is dropped. */
        ttl: duration.min(1).max(60_000).default(1_000),
      })
      .strict()
      .default({ ttl: 1_000 }),
    breaker: z
      .object({
        /** Failed calls in a row that open the breaker. */
        failures: z.number().int().min(1).max(1000).default(5),
        /** Milliseconds the breaker stays open before one probe. */
        openTime: duration.min(1).max(3_600_000).default(1_000),
      })
      .strict()
      .default({ failures: 5, openTime: 1_000 }),
  })
  .strict();

export type RedisSettings = z.output<typeof redisSettings>;

// Both scripts: KEYS[1] the limit's key; the last ARGV the tokens asked for. They answer
// {granted, retry ms, reset ms} (floats as strings: Redis truncates Lua numbers to integers): what is
// there, up to the ask; refused only when not one token is, for as long as the whole ask takes to come
// back (so a refusal spell is long enough to spare Redis a call a request). Times near 1.8e12 ms lose low bits in sums, so comparisons are made on differences from
// now, with a microsecond's slack.
const CLOCK = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
`;

/** GCRA on the theoretical arrival time (ms on Redis's clock). ARGV: rate a second, burst, tokens. */
const TOKEN_BUCKET = `${CLOCK}local interval = 1000 / tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2]) * interval
local n = tonumber(ARGV[3])
local ahead = tonumber(redis.call('GET', KEYS[1]) or '0') - now
if ahead < 0 then ahead = 0 end
local avail = math.floor((tolerance - ahead) / interval + 0.000001)
if avail < 1 then
  return {0, string.format('%.3f', ahead + n * interval - tolerance), string.format('%.3f', ahead)}
end
if avail < n then n = avail end
local after = ahead + n * interval
redis.call('SET', KEYS[1], string.format('%.3f', now + after), 'PX', math.ceil(after) + 1000)
return {n, '0', string.format('%.3f', after)}
`;

/**
 * Two fixed windows, the previous weighted by what the sliding window still covers of it. ARGV: limit,
 * window ms, tokens. The retry is when `n` more fit: within this window once the previous one's weight
 * has fallen enough, else in the next.
 */
const SLIDING_WINDOW = `${CLOCK}local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local index = math.floor(now / window)
local v = redis.call('HMGET', KEYS[1], 'i', 'c', 'p')
local i = tonumber(v[1] or '-1')
local c = tonumber(v[2] or '0')
local p = tonumber(v[3] or '0')
if i ~= index then
  if i == index - 1 then p = c else p = 0 end
  c = 0
end
local into = (now - index * window) / window
local reset = (index + 1) * window - now
local avail = math.floor(limit - p * (1 - into) - c + 0.000001)
if avail < 1 then
  local room = limit - n - c
  local retry = -1
  if room >= 0 and p > 0 then
    local at = 1 - room / p
    if at <= 1 then retry = math.max(0, (at - into) * window) end
  end
  if retry < 0 then
    local at = 0
    if c > 0 then at = math.max(0, 1 - (limit - n) / c) end
    retry = (1 - into + at) * window
  end
  return {0, string.format('%.3f', retry), string.format('%.3f', reset)}
end
if avail < n then n = avail end
redis.call('HSET', KEYS[1], 'i', string.format('%d', index), 'c', c + n, 'p', p)
redis.call('PEXPIRE', KEYS[1], window * 2)
return {n, '0', string.format('%.3f', reset)}
`;

/** What Redis answered a lease request: `granted` 0 is a refusal for `retryMs`. */
export interface LeaseAnswer {
  granted: number;
  retryMs: number;
  resetMs: number;
}

/** Why a lease request got no answer (Redis failed, timed out, or the breaker is open). */
export class RedisUnavailable extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'RedisUnavailable';
  }
}

/** The process-wide counts of one gateway's Redis limits (shared counters, every loop adds to them). */
export interface RedisLimitCounters {
  readonly calls: SharedCounter;
  /** Calls Redis answered. */
  readonly answered: SharedCounter;
  readonly errors: SharedCounter;
  readonly failOpen: SharedCounter;
  readonly failClosed: SharedCounter;
  readonly breakerOpened: SharedCounter;
}

/** The counters under their shared names (the admin endpoint reads the same ones). */
export function redisCounters(shared: SharedState): RedisLimitCounters {
  return {
    calls: shared.counter('rate-limit|redis|calls'),
    answered: shared.counter('rate-limit|redis|answered'),
    errors: shared.counter('rate-limit|redis|errors'),
    failOpen: shared.counter('rate-limit|redis|fail-open'),
    failClosed: shared.counter('rate-limit|redis|fail-closed'),
    breakerOpened: shared.counter('rate-limit|redis|breaker-opened'),
  };
}

// The breaker's states.
const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;

/** One loop's connection to one Redis, with its breaker; shared by the loop's filters that name it. */
export class RedisLimitStore {
  private readonly client: Redis;
  private state = CLOSED;
  private failuresInARow = 0;
  private openedAt = 0;
  /** A half-open probe is on its way (the others fail fast meanwhile). */
  private probing = false;
  /** Filter instances using the store; the last one out closes it. */
  refs = 0;

  private readonly loop: EventLoop;
  private readonly settings: RedisSettings;
  private readonly counters: RedisLimitCounters;

  constructor(loop: EventLoop, settings: RedisSettings, counters: RedisLimitCounters) {
    this.loop = loop;
    this.settings = settings;
    this.counters = counters;
    this.client = new Redis(settings.url, {
      // Commands wait in ioredis's queue while it (re)connects, each bounded by the timeout.
      commandTimeout: settings.timeout,
      connectTimeout: Math.max(1000, settings.timeout),
      maxRetriesPerRequest: 1,
      retryStrategy: (times) => Math.min(50 * times, 1000),
      enableReadyCheck: true,
      connectionName: 'netloom-rate-limit',
    });
    // Errors reach the calls that failed; the connection's own are counted through them, not thrown.
    this.client.on('error', () => {});
  }

  /** Asks for `tokens` of the token bucket `key` (`rate` a second, `burst` at once). */
  tokenBucket(key: string, rate: number, burst: number, tokens: number): Promise<LeaseAnswer> {
    return this.call(TOKEN_BUCKET, key, rate, burst, tokens);
  }

  /** Asks for `tokens` of the sliding window `key` (`limit` in any `windowMs`). */
  slidingWindow(key: string, limit: number, windowMs: number, tokens: number): Promise<LeaseAnswer> {
    return this.call(SLIDING_WINDOW, key, limit, windowMs, tokens);
  }

  private call(script: string, key: string, a: number, b: number, tokens: number): Promise<LeaseAnswer> {
    switch (this.state) {
      case OPEN:
        if (this.loop.now() - this.openedAt < this.settings.breaker.openTime)
          return Promise.reject(new RedisUnavailable('the Redis breaker is open'));
        this.state = HALF_OPEN;
        this.loop.log.info('rate-limit Redis breaker half-open', { url: this.redacted() });
        break;
      case HALF_OPEN:
        if (this.probing) return Promise.reject(new RedisUnavailable('the Redis breaker is half-open'));
        break;
    }
    if (this.state === HALF_OPEN) this.probing = true;
    this.counters.calls.add(1);
    // EVAL, not EVALSHA: a Redis that lost its script cache (a restart, a failover, SCRIPT FLUSH) would
    // answer NOSCRIPT and cost a second call within the same request's wait. A lease call is rare enough
    // that sending the script (under 1 KiB) each time costs nothing measurable.
    return this.client.eval(script, 1, key, String(a), String(b), String(tokens)).then(
      (reply) => {
        const answer = parseAnswer(reply);
        if (answer === null) {
          const e = new RedisUnavailable(`unexpected reply from the rate-limit script: ${String(reply)}`);
          this.failed(e);
          throw e;
        }
        this.succeeded();
        return answer;
      },
      (e: unknown) => {
        this.failed(e);
        throw new RedisUnavailable(`Redis: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      },
    );
  }

  private succeeded(): void {
    this.counters.answered.add(1);
    this.failuresInARow = 0;
    if (this.state !== CLOSED) {
      this.state = CLOSED;
      this.probing = false;
      this.loop.log.info('rate-limit Redis breaker closed', { url: this.redacted() });
    }
  }

  private failed(e: unknown): void {
    this.counters.errors.add(1);
    // Calls already on their way when the breaker opened: counted, but the spell is not restarted.
    if (this.state === OPEN) return;
    this.failuresInARow++;
    const message = e instanceof Error ? e.message : String(e);
    if (this.state === HALF_OPEN || this.failuresInARow >= this.settings.breaker.failures) {
      if (this.state !== OPEN) this.counters.breakerOpened.add(1);
      this.state = OPEN;
      this.probing = false;
      this.openedAt = this.loop.now();
      this.loop.log.warn('rate-limit Redis breaker opened', {
        url: this.redacted(),
        error: message,
        failures: this.failuresInARow,
        openTime: this.settings.breaker.openTime,
      });
    } else if (this.failuresInARow === 1) {
      this.loop.log.warn('rate-limit Redis call failed', { url: this.redacted(), error: message });
    }
  }

  /** The URL without its password, for logs. */
  private redacted(): string {
    const u = new URL(this.settings.url);
    if (u.password !== '') u.password = '***';
    u.search = '';
    return u.toString();
  }

  /** Closes the connection (the last filter using it is gone). */
  close(): void {
    this.client.disconnect();
  }
}

/** The script's answer, or null for anything else (a proxy or a foreign script in the way). */
function parseAnswer(reply: unknown): LeaseAnswer | null {
  if (!Array.isArray(reply) || reply.length !== 3) return null;
  const granted = Number(reply[0]);
  const retryMs = Number(reply[1]);
  const resetMs = Number(reply[2]);
  if (!Number.isInteger(granted) || granted < 0 || !Number.isFinite(retryMs) || !Number.isFinite(resetMs))
    return null;
  return { granted, retryMs, resetMs };
}

/** Each loop's stores, by what makes them differ (URL, timeout, breaker). */
const stores = new WeakMap<EventLoop, Map<string, RedisLimitStore>>();

/** The loop's store for `settings`, opened on first use; give it back with {@link releaseStore}. */
export function acquireStore(loop: EventLoop, settings: RedisSettings, shared: SharedState): RedisLimitStore {
  let byKey = stores.get(loop);
  if (byKey === undefined) {
    byKey = new Map();
    stores.set(loop, byKey);
  }
  const id = storeId(settings);
  let store = byKey.get(id);
  if (store === undefined) {
    store = new RedisLimitStore(loop, settings, redisCounters(shared));
    byKey.set(id, store);
  }
  store.refs++;
  return store;
}

/** Gives back a store {@link acquireStore} lent; the last user closes its connection. */
export function releaseStore(loop: EventLoop, settings: RedisSettings, store: RedisLimitStore): void {
  if (--store.refs > 0) return;
  stores.get(loop)?.delete(storeId(settings));
  store.close();
}

function storeId(s: RedisSettings): string {
  return `${s.url}\u0000${s.timeout}\u0000${s.breaker.failures}\u0000${s.breaker.openTime}`;
}
