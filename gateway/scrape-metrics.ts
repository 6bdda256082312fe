/**
 * The gateway's figures read at a scrape, on the main thread: reloads and the configuration version, rate
 * limits and Redis, circuits, mirrors and the span pipeline, all kept elsewhere (shared memory, the main
 * thread's counters) and turned into samples; and the room a listener's metrics memory needs.
 */
import { defineMetric, type LogStats, type MetricSample } from '../core/index.ts';
import type { CircuitStats } from './circuit-breaker.ts';
import type { LimitStats } from './governance-stats.ts';
import type { MirrorStats } from './mirror.ts';

const reloads = defineMetric(
  'netloom_gateway_reloads_total',
  'counter',
  'Configuration reloads by result: applied, unchanged, refused.',
  ['result'],
);
const configVersion = defineMetric(
  'netloom_gateway_config_version',
  'gauge',
  'The configuration version in force.',
);
const targetRollouts = defineMetric(
  'netloom_gateway_target_rollouts_total',
  'counter',
  'Configuration versions rolled out because discovered targets changed (no source reload).',
);
const rateLimited = defineMetric(
  'netloom_gateway_rate_limited_total',
  'counter',
  "Requests a route's rate-limit filters refused.",
  ['route'],
);
const keyEvictions = defineMetric(
  'netloom_gateway_rate_limit_key_evictions_total',
  'counter',
  'Rate-limit keys evicted from the shared key table.',
);
const redisCalls = defineMetric(
  'netloom_gateway_rate_limit_redis_calls_total',
  'counter',
  'Calls to Redis for rate limits, by result (ok, error).',
  ['result'],
);
const redisFallbacks = defineMetric(
  'netloom_gateway_rate_limit_redis_fallbacks_total',
  'counter',
  'Requests decided without Redis while it failed, by mode (open: admitted, closed: refused).',
  ['mode'],
);
const redisBreaker = defineMetric(
  'netloom_gateway_rate_limit_redis_breaker_opened_total',
  'counter',
  "Times the rate limits' Redis breaker opened.",
);
const circuitOpen = defineMetric(
  'netloom_gateway_circuit_open_loops',
  'gauge',
  'Loops where a circuit is open or half-open now.',
  ['circuit'],
);
const circuitTransitions = defineMetric(
  'netloom_gateway_circuit_transitions_total',
  'counter',
  'Circuit transitions, by the state entered.',
  ['circuit', 'to'],
);
const circuitFallbacks = defineMetric(
  'netloom_gateway_circuit_fallbacks_total',
  'counter',
  'Requests a circuit answered with its fallback.',
  ['circuit'],
);
const circuitShed = defineMetric(
  'netloom_gateway_circuit_shed_total',
  'counter',
  'Requests of low-priority routes cut while the circuit was closed.',
  ['circuit'],
);
const mirrorRequests = defineMetric(
  'netloom_gateway_mirror_requests_total',
  'counter',
  "Mirrors of a route's requests, by outcome (started, answered, failed, aborted, skipped).",
  ['route', 'outcome'],
);
const mirrorsInFlight = defineMetric('netloom_gateway_mirrors_in_flight', 'gauge', 'Mirrors running now.', [
  'route',
]);

/** Reload results counted on the main thread. */
export interface ReloadCounts {
  applied: number;
  unchanged: number;
  refused: number;
}

/** What the main thread knows at a scrape, as samples. */
export function gatewaySamples(figures: {
  version: number;
  reloads: ReloadCounts;
  /** Versions rolled out because discovered targets changed. */
  targetRollouts: number;
  limits: Pick<LimitStats, 'evictions' | 'rejected' | 'redis'>;
  circuits: Record<string, CircuitStats>;
  mirrors: Record<string, MirrorStats>;
}): MetricSample[] {
  const out: MetricSample[] = [];
  const put = (family: MetricSample['family'], values: string[], value: number) =>
    out.push({ family, values, value });
  for (const result of ['applied', 'unchanged', 'refused'] as const)
    put(reloads, [result], figures.reloads[result]);
  put(configVersion, [], figures.version);
  put(targetRollouts, [], figures.targetRollouts);
  for (const [route, n] of Object.entries(figures.limits.rejected)) put(rateLimited, [route], n);
  put(keyEvictions, [], figures.limits.evictions);
  const redis = figures.limits.redis;
  if (redis !== undefined) {
    put(redisCalls, ['ok'], redis.answered);
    put(redisCalls, ['error'], redis.errors);
    put(redisFallbacks, ['open'], redis.failOpen);
    put(redisFallbacks, ['closed'], redis.failClosed);
    put(redisBreaker, [], redis.breakerOpened);
  }
  for (const [id, c] of Object.entries(figures.circuits)) {
    put(circuitOpen, [id], c.openLoops);
    put(circuitTransitions, [id, 'open'], c.opened);
    put(circuitTransitions, [id, 'half_open'], c.halfOpened);
    put(circuitTransitions, [id, 'closed'], c.closed);
    put(circuitFallbacks, [id], c.fallbacks);
    put(circuitShed, [id], c.shed);
  }
  for (const [route, m] of Object.entries(figures.mirrors)) {
    for (const outcome of ['started', 'answered', 'failed', 'aborted', 'skipped'] as const)
      put(mirrorRequests, [route, outcome], m[outcome]);
    put(mirrorsInFlight, [route], m.inFlight);
  }
  return out;
}

const spans = defineMetric(
  'netloom_gateway_traced_requests_total',
  'counter',
  "Traced requests' spans (a server span, and a client span once a target was tried): queued by the loops, exported, dropped (queue full, or the collector failed).",
  ['outcome'],
);

/** The span pipeline's figures (`observability.tracing`), a request (one or two spans) a count. */
export function spanSamples(stats: LogStats): MetricSample[] {
  const dropped = stats.dropped.full + stats.dropped.tooLarge + stats.dropped.sink + stats.dropped.abandoned;
  return [
    { family: spans, values: ['queued'], value: stats.committed },
    { family: spans, values: ['exported'], value: stats.shipped },
    { family: spans, values: ['dropped'], value: dropped },
  ];
}

/**
 * Room for the gateway's series in a listener's metrics memory, from the configuration at start: a target
 * takes 8 series, a route 15 plus 6 an upstream it reaches, a histogram 17 cells; twice that for reloads
 * and discovered targets to come (past it, series are dropped and counted on /metrics).
 */
export function metricsRoom(config: {
  routes: readonly unknown[];
  upstreams: Record<string, { targets: readonly unknown[]; discovery?: unknown }>;
}): { metricsSeries: number; metricsCells: number } {
  const upstreams = Object.values(config.upstreams);
  const targets = upstreams.reduce((n, u) => n + u.targets.length + (u.discovery === undefined ? 0 : 64), 0);
  const routes = config.routes.length;
  const series = 512 + 8 * targets + routes * (15 + 6 * Math.min(upstreams.length, 4)) + 3 * upstreams.length;
  const cells = series + 17 * (routes + upstreams.length);
  return { metricsSeries: Math.max(4096, 2 * series), metricsCells: Math.max(32_768, 2 * cells) };
}
