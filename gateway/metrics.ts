/**
 * The gateway's metrics. Per request, each loop adds to series in its own row of the listener's metrics
 * memory (`loop.metrics`): requests by route, domain, upstream and status class, latency histograms, body
 * bytes, retries and failures. Every second each loop sets its gauges (pools, target health, WebSockets).
 * Figures kept elsewhere in shared memory (rate limits, circuits, mirrors), reloads and the log pipeline
 * are read at the scrape. Labels come from the configuration only (route, domain, upstream, target,
 * failure kind): no per-path or per-client series.
 */
import {
  defineMetric,
  type LogStats,
  type MetricSample,
  type MetricSeries,
  type MetricsWriter,
} from '../core/index.ts';
import type { CircuitStats } from './circuit-breaker.ts';
import type { CompletionRecord } from './completion.ts';
import type { MirrorStats } from './mirror.ts';
import type { Upstream, UpstreamTarget } from './upstream.ts';

/** Latency bucket bounds, seconds: 1 ms to 30 s. */
const LATENCY = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const requests = defineMetric(
  'netloom_gateway_requests_total',
  'counter',
  'Requests through a route, by its domain, the upstream chosen and the status class answered (none: the client got no status).',
  ['route', 'domain', 'upstream', 'status'],
);
const duration = defineMetric(
  'netloom_gateway_request_duration_seconds',
  'histogram',
  "From a request's head to the end of its answer, by route.",
  ['route'],
  LATENCY,
);
const firstByte = defineMetric(
  'netloom_gateway_upstream_first_byte_seconds',
  'histogram',
  "From a request's head to its upstream's response head, by upstream.",
  ['upstream'],
  LATENCY,
);
const requestBytes = defineMetric(
  'netloom_gateway_request_body_bytes_total',
  'counter',
  'Request body bytes read from clients, by route.',
  ['route'],
);
const responseBytes = defineMetric(
  'netloom_gateway_response_body_bytes_total',
  'counter',
  'Response body bytes written to clients, by route.',
  ['route'],
);
const retries = defineMetric(
  'netloom_gateway_retries_total',
  'counter',
  'Attempts on another target, by upstream.',
  ['upstream'],
);
const retriesDenied = defineMetric(
  'netloom_gateway_retries_denied_total',
  'counter',
  "Retries the upstream's retry budget refused, by upstream.",
  ['upstream'],
);
const failures = defineMetric(
  'netloom_gateway_failures_total',
  'counter',
  'Requests that failed, by route and kind (connect-failed, upstream-timeout, client-gone...).',
  ['route', 'kind'],
);
const unrouted = defineMetric(
  'netloom_gateway_unrouted_requests_total',
  'counter',
  'Requests the gateway answered itself before proxying: no route (404), bad path or Host (400), OPTIONS * (server-options), CONNECT refused (method-not-allowed), unsupported, bad-upgrade.',
  ['reason'],
);
const poolConnections = defineMetric(
  'netloom_gateway_pool_connections',
  'gauge',
  "Upstream connections of a target's pools, open (idle included) and idle, summed over the loops.",
  ['upstream', 'target', 'state'],
);
const poolWaiting = defineMetric(
  'netloom_gateway_pool_waiting',
  'gauge',
  "Requests waiting for a connection in a target's pools.",
  ['upstream', 'target'],
);
const poolEvents = defineMetric(
  'netloom_gateway_pool_events_total',
  'counter',
  "A target's pool connections created, reused and failed, and requests refused at a full queue (overflowed).",
  ['upstream', 'target', 'event'],
);
const healthyLoops = defineMetric(
  'netloom_gateway_target_healthy_loops',
  'gauge',
  'Loops that see a target healthy (active checks), out of the listener loops.',
  ['upstream', 'target'],
);
const websockets = defineMetric('netloom_gateway_websockets_open', 'gauge', 'WebSocket relays open now.');

const STATUS_CLASSES = ['none', '1xx', '2xx', '3xx', '4xx', '5xx'];

/** The series of one upstream as one route's requests use them. */
interface UpstreamSeries {
  readonly byStatus: MetricSeries[];
  readonly firstByte: MetricSeries;
  readonly retries: MetricSeries;
  readonly retriesDenied: MetricSeries;
}

/** One route's series on one loop: handles made on first use, then updated with no allocation. */
export class RouteMetrics {
  private readonly writer: MetricsWriter;
  private readonly route: string;
  private readonly domain: string;
  private readonly duration: MetricSeries;
  private readonly requestBytes: MetricSeries;
  private readonly responseBytes: MetricSeries;
  private readonly byUpstream = new Map<Upstream, UpstreamSeries>();
  private readonly failures = new Map<string, MetricSeries>();

  constructor(writer: MetricsWriter, route: string, domain: string) {
    this.writer = writer;
    this.route = route;
    this.domain = domain;
    this.duration = writer.series(duration, [route]);
    this.requestBytes = writer.series(requestBytes, [route]);
    this.responseBytes = writer.series(responseBytes, [route]);
  }

  private upstream(u: Upstream): UpstreamSeries {
    let s = this.byUpstream.get(u);
    if (s === undefined) {
      const w = this.writer;
      s = {
        byStatus: STATUS_CLASSES.map((c) => w.series(requests, [this.route, this.domain, u.name, c])),
        firstByte: w.series(firstByte, [u.name]),
        retries: w.series(retries, [u.name]),
        retriesDenied: w.series(retriesDenied, [u.name]),
      };
      this.byUpstream.set(u, s);
    }
    return s;
  }

  /** Counts a completed request (`upstream`: the one that served or was to serve it). */
  complete(record: CompletionRecord, upstream: Upstream): void {
    const s = this.upstream(upstream);
    const status = record.status;
    s.byStatus[status >= 100 && status < 600 ? (status / 100) | 0 : 0]!.add();
    this.duration.observe(record.totalMs / 1000);
    if (record.firstByteMs >= 0) s.firstByte.observe(record.firstByteMs / 1000);
    if (record.retries > 0) s.retries.add(record.retries);
    if (record.retryDenied) s.retriesDenied.add();
    if (record.bytesIn > 0) this.requestBytes.add(record.bytesIn);
    if (record.bytesOut > 0) this.responseBytes.add(record.bytesOut);
    const kind = record.error;
    if (kind !== null) {
      let f = this.failures.get(kind);
      if (f === undefined) {
        f = this.writer.series(failures, [this.route, kind]);
        this.failures.set(kind, f);
      }
      f.add();
    }
  }
}

/** A loop's series outside routes: requests refused before routing, and the gauges set every second. */
export class LoopMetrics {
  private readonly writer: MetricsWriter;
  private readonly unrouted = new Map<string, MetricSeries>();
  /** Each target's series, and what its pool had counted at the last call. */
  private readonly targets = new Map<UpstreamTarget, { series: MetricSeries[]; counted: number[] }>();
  private readonly websockets: MetricSeries;

  constructor(writer: MetricsWriter) {
    this.writer = writer;
    this.websockets = writer.series(websockets, []);
  }

  /** Counts a request answered before any route took it (`reason`: no-route, bad-path, bad-host...). */
  refused(reason: string): void {
    let s = this.unrouted.get(reason);
    if (s === undefined) {
      s = this.writer.series(unrouted, [reason]);
      this.unrouted.set(reason, s);
    }
    s.add();
  }

  /**
   * Sets this loop's gauges (its targets' pools and health, its WebSockets) and adds what the pools counted
   * since the last call. A target a reload removed stops counting (its gauges go to 0); a pool made anew
   * (the target removed and added again) counts from its own zero, so the counters never go back.
   */
  gauges(targets: Iterable<[string, UpstreamTarget]>, websocketsOpen: number): void {
    const current = new Map<UpstreamTarget, string>();
    for (const [upstream, t] of targets) current.set(t, upstream);
    for (const [t, entry] of this.targets) {
      if (current.has(t)) continue;
      for (const k of [0, 1, 2, 7]) entry.series[k]!.set(0);
      this.targets.delete(t);
    }
    for (const [t, upstream] of current) {
      let entry = this.targets.get(t);
      if (entry === undefined) {
        const w = this.writer;
        const a = t.address;
        entry = {
          series: [
            w.series(poolConnections, [upstream, a, 'open']),
            w.series(poolConnections, [upstream, a, 'idle']),
            w.series(poolWaiting, [upstream, a]),
            w.series(poolEvents, [upstream, a, 'created']),
            w.series(poolEvents, [upstream, a, 'reused']),
            w.series(poolEvents, [upstream, a, 'failed']),
            w.series(poolEvents, [upstream, a, 'overflowed']),
            w.series(healthyLoops, [upstream, a]),
          ],
          counted: [0, 0, 0, 0],
        };
        this.targets.set(t, entry);
      }
      const p = t.pool.stats();
      const s = entry.series;
      s[0]!.set(p.open);
      s[1]!.set(p.idle);
      s[2]!.set(p.waiting);
      s[7]!.set(t.healthy ? 1 : 0);
      const totals = [p.created, p.reused, p.failed, p.overflowed];
      for (let k = 0; k < 4; k++) {
        const delta = totals[k]! - entry.counted[k]!;
        if (delta > 0) s[3 + k]!.add(delta);
        entry.counted[k] = totals[k]!;
      }
    }
    this.websockets.set(websocketsOpen);
  }
}

// ---- read at the scrape (the main thread) -------------------------------------------------------------

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
  limits: {
    evictions: number;
    rejected: Record<string, number>;
    redis?: {
      calls: number;
      answered: number;
      errors: number;
      failOpen: number;
      failClosed: number;
      breakerOpened: number;
    };
  };
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
