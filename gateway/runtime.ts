import type { EventLoop } from '../core/index.ts';
import type { GatewayConfig, RouteConfig } from './config.ts';
import { type Filter, filterFactory } from './filter.ts';
import { byLength, FORWARDING, SKIP_REQUEST, SKIP_RESPONSE } from './hop-by-hop.ts';
import { Router } from './router.ts';
import { type TargetRegistry, Upstream, type UpstreamTarget } from './upstream.ts';

/** A route compiled for one loop. */
export interface RouteRuntime {
  readonly name: string;
  /** Business domain (user, video, live...) for metrics and rate limits. */
  readonly domain: string;
  readonly config: RouteConfig;
  readonly upstream: Upstream;
  /** Maps the request path to the upstream path, or null to keep it. */
  readonly rewrite: ((path: string) => string) | null;
  /** Headers set on the request (a client's own values of these names are dropped). */
  readonly requestAdd: readonly [string, string][];
  /** Lower-case names of `requestAdd`. */
  readonly requestSet: ReadonlySet<string>;
  /** Lower-case names removed from the request. */
  readonly requestRemove: ReadonlySet<string>;
  readonly responseAdd: readonly [string, string][];
  readonly responseSet: ReadonlySet<string>;
  /** Request fields not copied up (hop-by-hop, rewritten, removed or set by the route), by name length. */
  readonly requestSkip: ReadonlyMap<number, readonly string[]>;
  /** Response fields not copied down, by name length. */
  readonly responseSkip: ReadonlyMap<number, readonly string[]>;
  /** Some filter looks at response heads (they are then built as strings). */
  readonly inspectsResponses: boolean;
  readonly responseRemove: ReadonlySet<string>;
  readonly filters: readonly Filter[];
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
}

/** The value a route's `requestHeaders.add` sets for `name` (lower case), if any. */
function addedValue(r: RouteConfig, name: string): string | undefined {
  for (const [key, value] of Object.entries(r.requestHeaders?.add ?? {}))
    if (key.toLowerCase() === name) return value;
  return undefined;
}

function rewriter(rule: RouteConfig['rewrite']): ((path: string) => string) | null {
  if (rule === undefined) return null;
  if ('stripPrefix' in rule) {
    const prefix = rule.stripPrefix.replace(/\/$/, '');
    return (path) => (path.startsWith(prefix) ? path.slice(prefix.length) || '/' : path);
  }
  if ('replacePrefix' in rule) {
    const { from, to } = rule.replacePrefix;
    return (path) => {
      if (!path.startsWith(from)) return path;
      const rest = path.slice(from.length);
      return to.endsWith('/') && rest.startsWith('/') ? to + rest.slice(1) : to + rest;
    };
  }
  const target = rule.replace;
  return () => target;
}

/**
 * Everything one loop needs to serve one configuration version: the router and the upstreams. Built off
 * to the side and swapped in with one assignment, so requests in flight keep the objects they started with.
 */
export class GatewayRuntime {
  readonly version: number;
  readonly config: GatewayConfig;
  readonly router: Router<RouteRuntime>;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly routes: readonly RouteRuntime[];

  private constructor(
    version: number,
    config: GatewayConfig,
    upstreams: Map<string, Upstream>,
    routes: RouteRuntime[],
  ) {
    this.version = version;
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

  /** Compiles `config` for `loop`; pools and target health come from (and stay in) `registry`. */
  static build(
    loop: EventLoop,
    config: GatewayConfig,
    version: number,
    registry: TargetRegistry,
  ): GatewayRuntime {
    const upstreams = new Map<string, Upstream>();
    for (const [name, u] of Object.entries(config.upstreams))
      upstreams.set(name, new Upstream(loop, name, u, registry));
    const routes: RouteRuntime[] = config.routes.map((r) => {
      const filters = r.filters.map(({ name, ...settings }) => {
        const factory = filterFactory(name);
        if (factory === undefined) throw new Error(`route ${r.name}: no filter named "${name}"`);
        return factory(settings, loop);
      });
      const requestRemove = new Set((r.requestHeaders?.remove ?? []).map((h) => h.toLowerCase()));
      const requestSet = new Set(Object.keys(r.requestHeaders?.add ?? {}).map((h) => h.toLowerCase()));
      const responseRemove = new Set((r.responseHeaders?.remove ?? []).map((h) => h.toLowerCase()));
      const responseSet = new Set(Object.keys(r.responseHeaders?.add ?? {}).map((h) => h.toLowerCase()));
      const added = r.proxyHeaders;
      const rewritten = [
        ...(added.forwarded ? FORWARDING : []),
        ...(added.requestId ? ['x-request-id'] : []),
        ...(added.traceparent ? ['traceparent'] : []),
      ];
      return {
        requestSkip: byLength(SKIP_REQUEST, rewritten, requestRemove, requestSet),
        responseSkip: byLength(SKIP_RESPONSE, responseRemove, responseSet),
        inspectsResponses: filters.some((f) => f.onResponse !== undefined),
        name: r.name,
        domain: r.domain,
        config: r,
        upstream: upstreams.get(r.upstream)!,
        rewrite: rewriter(r.rewrite),
        requestAdd: Object.entries(r.requestHeaders?.add ?? {}),
        requestRemove,
        requestSet,
        responseAdd: Object.entries(r.responseHeaders?.add ?? {}),
        responseRemove,
        responseSet,
        filters,
        preserveHost: r.preserveHost,
        addForwarded: added.forwarded,
        addRequestId: added.requestId,
        addTraceparent: added.traceparent,
        distrustClientId: requestRemove.has('x-request-id'),
        distrustClientTrace: requestRemove.has('traceparent'),
        fixedRequestId: addedValue(r, 'x-request-id'),
        fixedTraceparent: addedValue(r, 'traceparent'),
      };
    });
    return new GatewayRuntime(version, config, upstreams, routes);
  }

  /** Targets this runtime uses (the registry closes the pools of the others). */
  usedTargets(): Set<UpstreamTarget> {
    const used = new Set<UpstreamTarget>();
    for (const u of this.upstreams.values()) for (const t of u.targets) used.add(t);
    return used;
  }

  start(): void {
    for (const u of this.upstreams.values()) u.startChecks();
  }

  stop(): void {
    for (const u of this.upstreams.values()) u.stopChecks();
  }
}
