/**
 * The gateway's metrics. Per request, each loop adds to series in its own row of the listener's metrics
 * memory (`loop.metrics`): requests by route, domain, upstream and status class, latency histograms, body
 * bytes, retries and failures. Every second each loop sets its gauges (pools, target health, WebSockets).
 * Labels come from the configuration only (route, domain, upstream, target, failure kind): no per-path or
 * per-client series. Series of names no version on the loop uses any more are let go (a route renamed, a
 * target gone), so their room goes to new ones. What the main thread adds at a scrape is in
 * `scrape-metrics.ts`.
 */
import { defineMetric, type MetricSeries, type MetricsWriter } from '../core/index.ts';
import type { CompletionRecord } from './completion.ts';
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
/** Families labelled by route first (besides `requests`), by upstream first, by target. */
const BY_ROUTE = [duration, requestBytes, responseBytes, failures];
const BY_UPSTREAM = [firstByte, retries, retriesDenied];
const BY_TARGET = [poolConnections, poolWaiting, poolEvents, healthyLoops];

/**
 * Which route, upstream and (route, domain) names the versions alive on a loop use (built, in force, or
 * draining their requests), so that the series no version uses any more are let go: a
 * gateway whose routes are renamed, moved to another domain or pointed elsewhere over many reloads stays
 * within its metrics memory, and /metrics lists what is configured.
 */
export class SeriesLedger {
  private readonly writer: MetricsWriter;
  private readonly routes = new Map<string, number>();
  private readonly upstreams = new Map<string, number>();
  /** `route NUL domain`: a route and the domain its requests count under. */
  private readonly routeDomains = new Map<string, number>();

  constructor(writer: MetricsWriter) {
    this.writer = writer;
  }

  /**
   * A version's names are in use until the function returned runs (once: when the version closes). Any
   * route's request may be served by any upstream of the version (a filter may choose it).
   */
  hold(routes: readonly { name: string; domain: string }[], upstreams: readonly string[]): () => void {
    const r = [...new Set(routes.map((x) => x.name))];
    const u = [...new Set(upstreams)];
    const d = [...new Set(routes.map((x) => routeDomain(x.name, x.domain)))];
    SeriesLedger.add(this.routes, r);
    SeriesLedger.add(this.upstreams, u);
    SeriesLedger.add(this.routeDomains, d);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const gone =
        SeriesLedger.drop(this.routes, r) +
        SeriesLedger.drop(this.upstreams, u) +
        SeriesLedger.drop(this.routeDomains, d);
      if (gone > 0) this.sweep();
    };
  }

  private static add(counts: Map<string, number>, names: readonly string[]): void {
    for (const name of names) counts.set(name, (counts.get(name) ?? 0) + 1);
  }

  /** Takes one use of each name off; returns how many are used no more. */
  private static drop(counts: Map<string, number>, names: readonly string[]): number {
    let gone = 0;
    for (const name of names) {
      const n = (counts.get(name) ?? 1) - 1;
      if (n > 0) counts.set(name, n);
      else {
        counts.delete(name);
        gone++;
      }
    }
    return gone;
  }

  /**
   * Lets go of every series this loop's row holds that no version here uses: when a version closes, and
   * after a restart (what the crashed predecessor held for names removed since; call it once the version
   * in force runs).
   */
  sweep(): void {
    const w = this.writer;
    const route = (name: string) => !this.routes.has(name);
    const upstream = (name: string) => !this.upstreams.has(name);
    // A request's (route, domain) and upstream each still in use (by one version or another) keep it.
    w.releaseSeries(requests, (v) => !this.routeDomains.has(routeDomain(v[0]!, v[1]!)) || upstream(v[2]!));
    for (const f of BY_ROUTE) w.releaseSeries(f, (v) => route(v[0]!));
    for (const f of BY_UPSTREAM) w.releaseSeries(f, (v) => upstream(v[0]!));
  }
}

function routeDomain(route: string, domain: string): string {
  return `${route}\u0000${domain}`;
}

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
  /** At the next `gauges`, let go of target series the row holds for targets not in force. */
  private sweepPending = false;

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
   * (the target removed and added again) counts from its own zero, so the counters never go back. The
   * series of a target no longer in force are let go.
   */
  gauges(targets: Iterable<[string, UpstreamTarget]>, websocketsOpen: number): void {
    const current = new Map<UpstreamTarget, string>();
    for (const [upstream, t] of targets) current.set(t, upstream);
    let left = this.sweepPending;
    this.sweepPending = false;
    for (const t of this.targets.keys()) {
      if (current.has(t)) continue;
      this.targets.delete(t);
      left = true;
    }
    if (left) {
      const live = new Set<string>();
      for (const [t, upstream] of current) live.add(`${upstream}\u0000${t.address}`);
      for (const f of BY_TARGET) this.writer.releaseSeries(f, (v) => !live.has(`${v[0]}\u0000${v[1]}`));
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

  /** After a restart: the target series the crashed predecessor held go at the next `gauges` if not in force. */
  sweep(): void {
    this.sweepPending = true;
  }
}
