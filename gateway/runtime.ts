import type { EventLoop } from '../core/index.ts';
import type { GatewayConfig, RouteConfig, UpstreamConfig } from './config.ts';
import type { FilterInstance, FilterRegistry } from './filter.ts';
import { byLength, FORWARDING, SKIP_REQUEST, SKIP_RESPONSE } from './hop-by-hop.ts';
import { RouteMetrics, type SeriesLedger } from './metrics.ts';
import { MIRROR_MARKER, RouteMirror } from './mirror.ts';
import { Router } from './router.ts';
import type { SharedState } from './shared-state.ts';
import type { Tracer } from './span.ts';
import { TrafficSplit } from './traffic.ts';
import { type TargetRegistry, Upstream, type UpstreamTarget } from './upstream.ts';

/** A route compiled for one loop: its filters by stage, and the header policies the proxy applies. */
export interface RouteRuntime {
  readonly name: string;
  /** Business domain (user, video, live...) for metrics and rate limits. */
  readonly domain: string;
  readonly config: RouteConfig;
  readonly upstream: Upstream;
  /** Every upstream of the version, by name (a filter may send a request to another). */
  readonly upstreams: ReadonlyMap<string, Upstream>;
  /** Canary and A/B rules choosing another upstream per user, or null (then `upstream` serves all). */
  readonly traffic: TrafficSplit | null;
  /** Copies a share of the requests to a shadow upstream, or null. */
  readonly mirror: RouteMirror | null;
  /** The route's series in this loop's metrics row. */
  readonly metrics: RouteMetrics;
  /** Writes the spans of sampled requests, or null (tracing off, or the route sends no traceparent). */
  readonly tracer: Tracer | null;
  /** Maps the (normalised) request path to the upstream path, or null to keep it. */
  readonly rewrite: ((path: string) => string) | null;
  /** The route takes CONNECT (listed in `match.methods`): it opens tunnels to its upstream. */
  readonly allowsConnect: boolean;
  /** The version this route belongs to: requests hold it while they run (see {@link VersionUse}). */
  readonly use: VersionUse;
  // ---- filters, by stage (empty arrays cost nothing per request) -----------------------------------------
  readonly onRequest: readonly FilterInstance[];
  readonly onUpstreamRequest: readonly FilterInstance[];
  readonly onUpstreamResponse: readonly FilterInstance[];
  readonly onComplete: readonly FilterInstance[];
  readonly onError: readonly FilterInstance[];
  // ---- stock header policies -----------------------------------------------------------------------------
  /** Headers set on the request (a client's own values of these names are dropped). */
  readonly requestAdd: readonly [string, string][];
  /** Lower-case names removed from the request. */
  readonly requestRemove: ReadonlySet<string>;
  readonly responseAdd: readonly [string, string][];
  readonly responseSet: ReadonlySet<string>;
  readonly responseRemove: ReadonlySet<string>;
  /** Request fields not copied up (hop-by-hop, rewritten, removed or set by the route), by name length. */
  readonly requestSkip: ReadonlyMap<number, readonly string[]>;
  /** Response fields not copied down, by name length. */
  readonly responseSkip: ReadonlyMap<number, readonly string[]>;
  readonly preserveHost: boolean;
  /** The proxy adds X-Forwarded-* and Forwarded (else the client's pass through). */
  readonly addForwarded: boolean;
  /** The proxy generates (when absent) and echoes X-Request-Id. */
  readonly addRequestId: boolean;
  /** The proxy sends a traceparent with a new span id (else the client's passes through). */
  readonly addTraceparent: boolean;
  /** The route removes the client's X-Request-Id / traceparent: the proxy generates its own instead. */
  readonly distrustClientId: boolean;
  readonly distrustClientTrace: boolean;
  /** The X-Request-Id and traceparent values the route sets itself (allowed only with the proxy's off). */
  readonly fixedRequestId: string | undefined;
  readonly fixedTraceparent: string | undefined;
  /** Lower-case names the route's filters may not set (framing, Host, hop-by-hop, the proxy's own fields). */
  readonly ownedNames: ReadonlySet<string>;
}

/** The value a route's `requestHeaders.add` sets for `name` (lower case), if any. */
function addedValue(r: RouteConfig, name: string): string | undefined {
  for (const [key, value] of Object.entries(r.requestHeaders?.add ?? {}))
    if (key.toLowerCase() === name) return value;
  return undefined;
}

/**
 * Whether `path` is `prefix` or goes on below it at a segment boundary (`/api` covers `/api` and `/api/x`,
 * not `/apix`).
 */
function under(path: string, prefix: string): boolean {
  return (
    path === prefix ||
    (path.startsWith(prefix) && (prefix.endsWith('/') || path.charCodeAt(prefix.length) === 0x2f))
  );
}

/** The route's path rewrite; every result starts with `/`. */
export function rewriter(rule: RouteConfig['rewrite']): ((path: string) => string) | null {
  if (rule === undefined) return null;
  if ('stripPrefix' in rule) {
    const prefix = rule.stripPrefix.length > 1 ? rule.stripPrefix.replace(/\/$/, '') : rule.stripPrefix;
    if (prefix === '/') return null;
    return (path) => (under(path, prefix) ? path.slice(prefix.length) || '/' : path);
  }
  if ('replacePrefix' in rule) {
    const from = rule.replacePrefix.from.length > 1 ? rule.replacePrefix.from.replace(/\/$/, '') : '/';
    const to = rule.replacePrefix.to;
    return (path) => {
      if (!under(path, from)) return path;
      // What follows the prefix: empty, or from a `/` on (a trailing slash is kept: /api/ -> /v2/).
      const rest = from === '/' ? path : path.slice(from.length);
      if (rest === '') return to;
      return to.endsWith('/') ? to + rest.slice(1) : to + rest;
    };
  }
  const target = rule.replace;
  return () => target;
}

/** Per-loop state of filters that outlives reloads: one map per filter name and route. */
export type LocalState = Map<string, Map<string, unknown>>;

/**
 * Everything one loop needs to serve one configuration version: the router, the upstreams and the routes'
 * filter instances. Built off to the side and swapped in with one assignment, so requests in flight keep the
 * objects they started with.
 */
/**
 * Who still uses a version's filter instances: every proxied request while it runs. Once the version is
 * retired (replaced, rolled back, or the loop stops) and the last such request completed, the instances'
 * `close` runs, once.
 */
export class VersionUse {
  private inFlight = 0;
  private retired = false;
  private closed = false;
  private readonly instances: readonly FilterInstance[];
  private readonly loop: EventLoop;
  /** Lets the version's metric names go (see `SeriesLedger`). */
  private readonly letGoSeries: () => void;

  constructor(instances: readonly FilterInstance[], loop: EventLoop, letGoSeries: () => void = () => {}) {
    this.instances = instances;
    this.loop = loop;
    this.letGoSeries = letGoSeries;
  }

  acquire(): void {
    this.inFlight++;
  }

  release(): void {
    if (--this.inFlight === 0 && this.retired) this.close();
  }

  /** No new request will take this version. */
  retire(): void {
    this.retired = true;
    if (this.inFlight === 0) this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    closeInstances(this.instances, this.loop);
    this.letGoSeries();
  }
}

function closeInstances(instances: readonly FilterInstance[], loop: EventLoop): void {
  for (const f of instances) {
    try {
      f.close?.();
    } catch (err) {
      loop.log.error('gateway filter close failed', { error: err });
    }
  }
}

export class GatewayRuntime {
  readonly version: number;
  /** Requests of this version in flight, and when its filters close. */
  readonly use: VersionUse;
  readonly config: GatewayConfig;
  readonly router: Router<RouteRuntime>;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly routes: readonly RouteRuntime[];

  private constructor(
    version: number,
    config: GatewayConfig,
    upstreams: Map<string, Upstream>,
    routes: RouteRuntime[],
    use: VersionUse,
  ) {
    this.version = version;
    this.use = use;
    this.config = config;
    this.upstreams = upstreams;
    this.routes = routes;
    this.router = new Router(
      routes.map((r) => ({
        host: r.config.match.host,
        path: r.config.match.path,
        pathType: r.config.match.pathType,
        methods: r.config.match.methods,
        headers: r.config.match.headers,
        value: r,
      })),
    );
  }

  /**
   * Compiles `config` for `loop`; pools and target health come from (and stay in) `registry`, filters from
   * `filters` (their `create` runs here). Throws if a filter's `create` does: the version is then refused.
   */
  static build(
    loop: EventLoop,
    config: GatewayConfig,
    version: number,
    registry: TargetRegistry,
    filters: FilterRegistry,
    local: LocalState,
    shared: SharedState,
    tracer: Tracer | null = null,
    loopId = `0:${loop.index}`,
    ledger: SeriesLedger | null = null,
  ): GatewayRuntime {
    const upstreams = new Map<string, Upstream>();
    for (const [name, u] of Object.entries(config.upstreams))
      upstreams.set(name, new Upstream(loop, name, u, registry));
    const all: FilterInstance[] = [];
    const letGo = ledger?.hold(config.routes, Object.keys(config.upstreams));
    const use = new VersionUse(all, loop, letGo);
    let routes: RouteRuntime[];
    try {
      routes = GatewayRuntime.routesOf(
        loop,
        config,
        upstreams,
        filters,
        local,
        shared,
        all,
        use,
        tracer,
        loopId,
      );
    } catch (err) {
      closeInstances(all, loop); // the version is refused: what its filters opened goes too
      letGo?.();
      throw err;
    }
    return new GatewayRuntime(version, config, upstreams, routes, use);
  }

  private static routesOf(
    loop: EventLoop,
    config: GatewayConfig,
    upstreams: Map<string, Upstream>,
    filters: FilterRegistry,
    local: LocalState,
    shared: SharedState,
    all: FilterInstance[],
    use: VersionUse,
    tracer: Tracer | null,
    loopId: string,
  ): RouteRuntime[] {
    return config.routes.map((r) => {
      const seen = new Map<string, number>();
      const instances = r.filters.map(({ name, ...settings }) => {
        const occurrence = seen.get(name) ?? 0;
        seen.set(name, occurrence + 1);
        const definition = filters.get(name);
        if (definition === undefined) throw new Error(`route ${r.name}: no filter named "${name}"`);
        const key = `${name}|${r.name}`;
        let state = local.get(key);
        if (state === undefined) {
          state = new Map();
          local.set(key, state);
        }
        const instance = definition.create(settings, {
          loop,
          route: r.name,
          occurrence,
          local: state,
          shared,
        });
        all.push(instance);
        return instance;
      });
      const stage = <K extends keyof FilterInstance>(k: K) =>
        instances.filter((f) => typeof f[k] === 'function');
      const requestRemove = new Set((r.requestHeaders?.remove ?? []).map((h) => h.toLowerCase()));
      const requestSet = new Set(Object.keys(r.requestHeaders?.add ?? {}).map((h) => h.toLowerCase()));
      const responseRemove = new Set((r.responseHeaders?.remove ?? []).map((h) => h.toLowerCase()));
      const responseSet = new Set(Object.keys(r.responseHeaders?.add ?? {}).map((h) => h.toLowerCase()));
      const added = r.proxyHeaders;
      const rewritten = [
        MIRROR_MARKER, // a client's own would make the upstream take live traffic for a copy
        ...(added.forwarded ? FORWARDING : []),
        ...(added.requestId ? ['x-request-id'] : []),
        ...(added.traceparent ? ['traceparent'] : []),
      ];
      return {
        name: r.name,
        domain: r.domain,
        config: r,
        upstream: upstreams.get(r.upstream)!,
        upstreams,
        traffic:
          r.traffic === undefined ? null : new TrafficSplit(r.traffic, upstreams, upstreams.get(r.upstream)!),
        metrics: new RouteMetrics(loop.metrics, r.name, r.domain),
        // Spans need the trace the proxy propagates: a route that does not send traceparent has none.
        tracer: r.proxyHeaders.traceparent ? tracer : null,
        mirror:
          r.mirror === undefined
            ? null
            : new RouteMirror(r.mirror, upstreams.get(r.mirror.upstream)!, r.name, shared, loop, loopId),
        rewrite: rewriter(r.rewrite),
        allowsConnect: r.match.methods?.includes('CONNECT') ?? false,
        use,
        onRequest: stage('onRequest'),
        onUpstreamRequest: stage('onUpstreamRequest'),
        onUpstreamResponse: stage('onUpstreamResponse'),
        onComplete: stage('onComplete'),
        onError: stage('onError'),
        requestAdd: Object.entries(r.requestHeaders?.add ?? {}),
        requestRemove,
        responseAdd: Object.entries(r.responseHeaders?.add ?? {}),
        responseSet,
        responseRemove,
        requestSkip: byLength(SKIP_REQUEST, rewritten, requestRemove, requestSet),
        responseSkip: byLength(SKIP_RESPONSE, responseRemove, responseSet),
        preserveHost: r.preserveHost,
        addForwarded: added.forwarded,
        addRequestId: added.requestId,
        addTraceparent: added.traceparent,
        distrustClientId: requestRemove.has('x-request-id'),
        distrustClientTrace: requestRemove.has('traceparent'),
        fixedRequestId: addedValue(r, 'x-request-id'),
        fixedTraceparent: addedValue(r, 'traceparent'),
        ownedNames: new Set([...SKIP_REQUEST, ...rewritten]),
      };
    });
  }

  /** The upstreams in force with their targets (the registry starts and stops checks by it). */
  targetsInUse(): Map<string, { config: UpstreamConfig; targets: readonly UpstreamTarget[] }> {
    const used = new Map<string, { config: UpstreamConfig; targets: readonly UpstreamTarget[] }>();
    for (const [name, u] of this.upstreams) used.set(name, { config: u.config, targets: u.targets });
    return used;
  }
}
