import { BroadcastChannel } from 'node:worker_threads';
import {
  bridgeToUsdt,
  type EventLoop,
  engineUsdtProbes,
  type LoopTimer,
  RingLogger,
  type UsdtBridge,
} from '../core/index.ts';
import { http1UsdtProbes, type Request, type Response } from '../protocols/http1/index.ts';
import { http2UsdtProbes } from '../protocols/http2/index.ts';
import { ProxyCall, sendGatewayError } from './call.ts';
import type { GatewayConfig } from './config.ts';
import { gatewayUsdtProbes } from './diagnostics.ts';
import type { FilterRegistry } from './filter.ts';
import { LoopMetrics, SeriesLedger } from './metrics.ts';
import { stopMirrors } from './mirror.ts';
import { normalizePath, PathError } from './paths.ts';
import type { PoolStats } from './pool.ts';
import { GatewayRuntime, type LocalState } from './runtime.ts';
import { SharedKeyTable } from './shared-keys.ts';
import { SharedState } from './shared-state.ts';
import { Tracer, type TracingSettings } from './span.ts';
import { TargetRegistry, type UpstreamTarget } from './upstream.ts';
import { connectionTokens, isValidHost } from './upstream-head.ts';
import { type RelayLimits, type RelayPlace, WebSocketRelays } from './websocket-relay.ts';

/** What the main thread hands every loop (structured-cloned as `loop.data`). */
export interface GatewayLoopData {
  /** BroadcastChannel name this gateway's reloads and stats travel on. */
  channel: string;
  config: GatewayConfig;
  version: number;
  /** Which listener of the gateway this loop serves (loops are `listener:index`). */
  listener: number;
  /** Plugin module specifiers every loop imports (the main thread validated them). */
  plugins: string[];
  /** The gateway's shared memory (see shared-state.ts). */
  shared: SharedArrayBuffer;
  /** The per-key limiter table every loop shares (see shared-keys.ts). */
  keys: SharedArrayBuffer;
  /** The span ring, when `observability.tracing` is on (see span.ts). */
  spans?: SharedArrayBuffer | undefined;
  /** Loops of the listeners before this one: loop ids unique across listeners (span producers). */
  loopBase?: number;
}

/** Messages on the gateway's channel. */
export type GatewayMessage =
  /** Build this version beside the running one; answer `prepared`. */
  | { type: 'prepare'; version: number; config: GatewayConfig }
  /** Swap the prepared version in (a loop that has not prepared it asks with `sync`). */
  | { type: 'commit'; version: number }
  /** Drop the prepared version: the reload is rolled back. */
  | { type: 'abort'; version: number }
  /** The version in force, for the loop `to` that asked with `sync` (other loops behind it apply it too). */
  | { type: 'config'; to: string; version: number; config: GatewayConfig }
  | { type: 'prepared'; loop: string; version: number; error?: string }
  | { type: 'committed'; loop: string; version: number }
  | { type: 'sync'; loop: string; version: number }
  | { type: 'stats'; loop: string; snapshot: LoopSnapshot };

/** One loop's view of its upstreams, for the admin endpoint. */
export interface LoopSnapshot {
  /** `listener:index`. */
  loop: string;
  version: number;
  at: number;
  /** WebSockets this loop proxies now. */
  websockets: number;
  upstreams: Record<
    string,
    {
      target: string;
      healthy: boolean;
      ejected: boolean;
      active: number;
      requests: number;
      pool: PoolStats;
    }[]
  >;
}

const STATS_INTERVAL = 1000;
/** How long a booting loop waits for the main thread's answer to its `sync` before serving what it has. */
const SYNC_WAIT = 2000;
const ALLOW_OPTIONS = 'GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS';

/**
 * The gateway on one loop: normalises paths, matches routes, runs their pipelines, and takes configuration
 * versions in two phases (prepare beside the running one, then swap on commit, or drop on abort), so a
 * version some loop cannot build is rolled back everywhere. Pools and target health live in a registry that
 * outlasts reloads.
 */
export class GatewayLoop {
  runtime: GatewayRuntime;
  /** This loop's name in messages and snapshots: `listener:index`. */
  readonly id: string;
  private readonly loop: EventLoop;
  private readonly registry: TargetRegistry;
  /** The WebSockets this loop proxies; they outlive reloads that keep their route. */
  private readonly relays: WebSocketRelays;
  private readonly filters: FilterRegistry;
  private readonly local: LocalState = new Map();
  private readonly shared: SharedState;
  private readonly channel: BroadcastChannel;
  private readonly statsTimer: LoopTimer;
  private readonly metrics: LoopMetrics;
  private readonly ledger: SeriesLedger;
  /** Writes sampled requests' spans (`observability.tracing`), or null. */
  private readonly tracer: Tracer | null;
  private readonly usdt: UsdtBridge | null;
  private readonly prepared = new Map<number, GatewayRuntime>();
  private syncedResolve: (() => void) | null = null;
  private readonly syncedPromise: Promise<void>;

  constructor(loop: EventLoop, data: GatewayLoopData, filters: FilterRegistry) {
    this.loop = loop;
    this.metrics = new LoopMetrics(loop.metrics);
    this.ledger = new SeriesLedger(loop.metrics);
    const tracing = data.config.observability.tracing;
    this.tracer = tracing === undefined || data.spans === undefined ? null : this.tracerFor(tracing, data);
    this.usdt = data.config.observability.dtrace
      ? bridgeToUsdt('netloom', [
          ...engineUsdtProbes,
          ...http1UsdtProbes,
          ...http2UsdtProbes,
          // Reloads publish on the main thread, which bridges that probe itself.
          ...gatewayUsdtProbes.filter((p) => p.channel !== 'netloom:gateway:reload'),
        ])
      : null;
    this.id = `${data.listener}:${loop.index}`;
    this.filters = filters;
    // A loop booting (or restarted after a crash): the places in flight its predecessor held come back.
    const loopNumber = (data.loopBase ?? 0) + loop.index;
    SharedKeyTable.reclaimInFlight(data.keys, loopNumber);
    this.shared = new SharedState(data.shared, data.keys, loopNumber);
    this.registry = new TargetRegistry(loop);
    this.relays = new WebSocketRelays(loop);
    this.runtime = this.build(data.config, data.version);
    // A loop booting (or restarted after a crash) runs no mirror: what its predecessor counted is released.
    for (const r of this.runtime.routes) r.mirror?.reclaimCrashed();
    this.relays.accessLog = data.config.http.accessLog;
    this.relays.reconfigure(relayLimits(this.runtime));
    this.registry.apply(this.runtime.targetsInUse());
    this.channel = new BroadcastChannel(data.channel);
    this.channel.unref();
    this.channel.onmessage = (event: unknown) => this.message((event as { data: GatewayMessage }).data);
    this.statsTimer = loop.every(STATS_INTERVAL, () => this.publish());
    this.syncedPromise = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, SYNC_WAIT);
      this.syncedResolve = () => {
        clearTimeout(timer);
        this.syncedResolve = null;
        resolve();
      };
    });
    // A loop restarted after a crash boots with the configuration it was first given: ask for the latest.
    this.post({ type: 'sync', loop: this.id, version: data.version });
  }

  /**
   * Resolves once the main thread answered this loop's `sync` (the loop then runs the version in force), or
   * after a short wait without an answer.
   */
  synced(): Promise<void> {
    return this.syncedPromise.then(() => this.publish());
  }

  /**
   * This loop's span writer: a producer id of its own in the span ring, the same across restarts (ids
   * 0-31 are the loops'; loops past them claim from the rest). With no id left, this loop traces nothing.
   */
  private tracerFor(settings: TracingSettings, data: GatewayLoopData): Tracer | null {
    try {
      return new Tracer(settings, new RingLogger(data.spans!, (data.loopBase ?? 0) + this.loop.index, true));
    } catch (err) {
      this.loop.log.warn('tracing is off on this loop', {
        loop: `${data.listener}:${this.loop.index}`,
        error: err,
      });
      return null;
    }
  }

  private build(config: GatewayConfig, version: number): GatewayRuntime {
    return GatewayRuntime.build(
      this.loop,
      config,
      version,
      this.registry,
      this.filters,
      this.local,
      this.shared,
      this.tracer,
      this.id,
      this.ledger,
    );
  }

  private message(msg: GatewayMessage): void {
    switch (msg.type) {
      case 'prepare': {
        const version = msg.version;
        if (version <= this.runtime.version || this.prepared.has(version)) {
          // Asked again (a loop restarted mid-reload made the main thread repeat it), or already in force.
          this.post({ type: 'prepared', loop: this.id, version });
          return;
        }
        try {
          this.prepared.set(version, this.build(msg.config, version));
          this.post({ type: 'prepared', loop: this.id, version });
        } catch (err) {
          this.loop.log.error('gateway configuration refused by loop', { version, error: err });
          this.post({ type: 'prepared', loop: this.id, version, error: (err as Error).message });
        }
        return;
      }
      case 'commit': {
        const version = msg.version;
        const next = this.prepared.get(version);
        if (next === undefined) {
          if (version <= this.runtime.version) this.post({ type: 'committed', loop: this.id, version });
          // Restarted (or late) after the prepare: the version in force comes with a sync.
          else this.post({ type: 'sync', loop: this.id, version: this.runtime.version });
          return;
        }
        for (const [v, older] of this.prepared) {
          if (v > version) continue;
          this.prepared.delete(v);
          if (older !== next) older.use.retire();
        }
        this.swap(next);
        this.post({ type: 'committed', loop: this.id, version });
        return;
      }
      case 'abort':
        this.prepared.get(msg.version)?.use.retire();
        this.prepared.delete(msg.version);
        return;
      case 'config': {
        if (msg.version > this.runtime.version) {
          try {
            this.swap(this.build(msg.config, msg.version));
          } catch (err) {
            this.loop.log.error('gateway configuration refused by loop', {
              version: msg.version,
              error: err,
            });
          }
        }
        if (msg.to === this.id) {
          if (this.syncedResolve !== null) {
            // The version in force runs: what a crashed predecessor's row held for names gone since goes.
            this.ledger.sweep();
            this.metrics.sweep();
          }
          this.syncedResolve?.();
          // It asked because it missed a commit (or booted): the main thread may be waiting for this answer.
          this.post({ type: 'committed', loop: this.id, version: this.runtime.version });
        }
        return;
      }
      default:
        return;
    }
  }

  /** Swaps a built version in with one assignment; requests in flight keep the objects they started with. */
  private swap(next: GatewayRuntime): void {
    const old = this.runtime;
    this.runtime = next;
    if (old !== next) for (const [name, u] of old.upstreams) u.successor = next.upstreams.get(name) ?? null;
    if (old !== next) old.use.retire(); // its filters close once its requests in flight are done
    this.registry.apply(next.targetsInUse());
    this.relays.accessLog = next.config.http.accessLog;
    this.relays.reconfigure(relayLimits(next));
    this.publish();
  }

  /** The request handler. */
  handle(req: Request, res: Response): void | Promise<void> {
    const host = req.header('host');
    if (host !== undefined && !isValidHost(host)) {
      // Quotes, commas or spaces in Host would be carried into X-Forwarded-Host and routing: refuse them.
      this.metrics.refused('bad-host');
      sendGatewayError(res, 400, 'invalid Host');
      return;
    }
    const runtime = this.runtime;
    const method = req.method;
    if (method === 'OPTIONS' && req.target === '*') {
      // A request about the server as a whole (RFC 9110 §9.3.7): answered here, never proxied.
      this.metrics.refused('server-options');
      res.status(204).header('allow', ALLOW_OPTIONS).end();
      return;
    }
    let path: string;
    if (method === 'CONNECT') {
      path = '/';
    } else {
      try {
        path = normalizePath(req.path, runtime.config.http.paths);
      } catch (err) {
        if (!(err instanceof PathError)) throw err;
        this.metrics.refused('bad-path');
        sendGatewayError(res, 400, err.message);
        return;
      }
    }
    const m = runtime.router.match(host, path, method, req);
    if (m === null) {
      this.metrics.refused('no-route');
      sendGatewayError(res, 404, 'no route', { path });
      return;
    }
    const route = m.value;
    const upstream = route.traffic === null ? route.upstream : route.traffic.choose(req);
    if (method === 'CONNECT') {
      if (!route.allowsConnect) {
        res.header('allow', ALLOW_OPTIONS);
        this.metrics.refused('method-not-allowed');
        sendGatewayError(res, 405, 'CONNECT is not allowed on this route', { route: route.name });
        return;
      }
      if (req.httpVersion === '2') {
        // A tunnel over an HTTP/2 stream (RFC 9113 §8.5) is not built: said plainly, not a 500.
        this.metrics.refused('unsupported');
        sendGatewayError(res, 501, 'CONNECT over HTTP/2 is not supported', { route: route.name });
        return;
      }
      // The route's filters (auth, rate limits) run on the CONNECT request before the tunnel opens.
      req.locals = { route: route.name, domain: route.domain, requestId: undefined, traceparent: undefined };
      return new ProxyCall(req, res, route, upstream, m.params, path, this.loop).startTunnel();
    }
    let relays: WebSocketRelays | null = null;
    if (route.config.websocket.enabled && isWebSocketUpgrade(req)) {
      if (upstream.config.protocol === 'http2') {
        // RFC 8441's WebSockets over HTTP/2 streams are not built: said plainly.
        this.metrics.refused('unsupported');
        sendGatewayError(res, 501, 'WebSocket to an HTTP/2 upstream is not supported', { route: route.name });
        return;
      }
      if (req.hasBody) {
        this.metrics.refused('bad-upgrade');
        sendGatewayError(res, 400, 'an upgrade request has no body', { route: route.name });
        return;
      }
      relays = this.relays;
    }
    // The proxy fills in the ids it sends upstream, so the access record carries them.
    req.locals = { route: route.name, domain: route.domain, requestId: undefined, traceparent: undefined };
    return new ProxyCall(req, res, route, upstream, m.params, path, this.loop, relays).start();
  }

  snapshot(): LoopSnapshot {
    const now = this.loop.now();
    const websockets = this.relays.size;
    const upstreams: LoopSnapshot['upstreams'] = {};
    for (const [name, u] of this.runtime.upstreams) {
      upstreams[name] = u.targets.map((t) => ({
        target: t.address,
        healthy: t.healthy,
        ejected: t.ejectedUntil > now,
        active: t.active,
        requests: t.requests,
        pool: t.pool.stats(),
      }));
    }
    return { loop: this.id, version: this.runtime.version, at: Date.now(), websockets, upstreams };
  }

  private publish(): void {
    this.post({ type: 'stats', loop: this.id, snapshot: this.snapshot() });
    this.metrics.gauges(this.targetsInForce(), this.relays.size);
  }

  private *targetsInForce(): Iterable<[string, UpstreamTarget]> {
    for (const [name, u] of this.runtime.upstreams) for (const t of u.targets) yield [name, t];
  }

  private post(msg: GatewayMessage): void {
    this.channel.postMessage(msg);
  }

  close(): void {
    this.relays.shutdown();
    this.runtime.use.retire();
    for (const p of this.prepared.values()) p.use.retire();
    this.prepared.clear();
    this.statsTimer.cancel();
    stopMirrors(this.loop);
    this.usdt?.disable();
    this.registry.close();
    this.channel.close();
  }
}

/** A WebSocket opening handshake's request (RFC 6455 §4.1): GET over HTTP/1.1 with `Upgrade: websocket`. */
function isWebSocketUpgrade(req: Request): boolean {
  return (
    req.method === 'GET' &&
    req.httpVersion === '1.1' &&
    req.upgrade !== undefined &&
    (connectionTokens(req.upgrade)?.has('websocket') ?? false)
  );
}

/**
 * Relay limits under `runtime`, looked up by a relay's place: the route's, or null when the route or its
 * WebSockets are gone, or the target is: among every upstream the route's traffic may choose, or, for a
 * relay a filter sent elsewhere (`useUpstream`, a breaker's degraded fallback), in the upstream it is on.
 * Built once a version.
 */
function relayLimits(runtime: GatewayRuntime): (place: RelayPlace) => RelayLimits | null {
  const byRoute = new Map<string, { limits: RelayLimits; targets: ReadonlySet<string> }>();
  for (const r of runtime.routes) {
    if (!r.config.websocket.enabled) continue;
    const upstreams = r.traffic === null ? [r.upstream] : r.traffic.upstreams();
    const targets = new Set(upstreams.flatMap((u) => u.targets.map((t) => t.address)));
    byRoute.set(r.name, { limits: r.config.websocket, targets });
  }
  return (place) => {
    const entry = byRoute.get(place.route);
    if (entry === undefined) return null;
    const kept = place.movedByFilter
      ? runtime.upstreams.get(place.upstreamName)?.targets.some((t) => t.address === place.target)
      : entry.targets.has(place.target);
    return kept === true ? entry.limits : null;
  };
}
