import { BroadcastChannel } from 'node:worker_threads';
import type { EventLoop } from '../core/index.ts';
import type { Request, Response } from '../protocols/http1/index.ts';
import type { GatewayConfig } from './config.ts';
import type { FilterContext } from './filter.ts';
import type { PoolStats } from './pool.ts';
import { isValidHost, ProxyCall, sendGatewayError } from './proxy.ts';
import { GatewayRuntime } from './runtime.ts';
import { TargetRegistry } from './upstream.ts';

/** What the main thread hands every loop (structured-cloned as `loop.data`). */
export interface GatewayLoopData {
  /** BroadcastChannel name this gateway's reloads and stats travel on. */
  channel: string;
  config: GatewayConfig;
  version: number;
}

/** Messages on the gateway's channel. */
export type GatewayMessage =
  | { type: 'config'; version: number; config: GatewayConfig }
  | { type: 'applied'; loop: number; version: number; error?: string }
  | { type: 'sync'; loop: number; version: number }
  | { type: 'stats'; loop: number; snapshot: LoopSnapshot };

/** One loop's view of its upstreams, for the admin endpoint. */
export interface LoopSnapshot {
  loop: number;
  version: number;
  at: number;
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

const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|$)/i;
const STATS_INTERVAL = 1000;

/**
 * The gateway on one loop: matches routes, runs filter chains, starts proxy calls, and swaps in new
 * configurations as they arrive. Pools and target health live in a registry that outlasts reloads.
 */
export class GatewayLoop {
  runtime: GatewayRuntime;
  private readonly loop: EventLoop;
  private readonly registry: TargetRegistry;
  private readonly channel: BroadcastChannel;
  private readonly statsTimer: { cancel(): void };

  constructor(loop: EventLoop, data: GatewayLoopData) {
    this.loop = loop;
    this.registry = new TargetRegistry(loop);
    this.runtime = GatewayRuntime.build(loop, data.config, data.version, this.registry);
    this.runtime.start();
    this.channel = new BroadcastChannel(data.channel);
    this.channel.unref();
    this.channel.onmessage = (event: unknown) => {
      const msg = (event as { data: GatewayMessage }).data;
      if (msg.type === 'config') this.reload(msg.config, msg.version);
    };
    this.statsTimer = loop.every(STATS_INTERVAL, () => this.publish());
    this.publish();
    // A loop restarted after a crash boots with the configuration it was first given: ask for the latest.
    this.post({ type: 'sync', loop: loop.index, version: data.version });
  }

  /** Builds the new configuration beside the old one, then swaps it in with one assignment. */
  reload(config: GatewayConfig, version: number): void {
    if (version <= this.runtime.version) return;
    let next: GatewayRuntime;
    try {
      next = GatewayRuntime.build(this.loop, config, version, this.registry);
    } catch (err) {
      this.loop.log.error('gateway configuration rejected by loop', { version, error: err });
      this.post({ type: 'applied', loop: this.loop.index, version, error: (err as Error).message });
      return;
    }
    const old = this.runtime;
    this.runtime = next;
    old.stop();
    next.start();
    this.registry.retain(next.usedTargets());
    this.post({ type: 'applied', loop: this.loop.index, version });
    this.publish();
  }

  /** The request handler. */
  handle(req: Request, res: Response): void | Promise<void> {
    const path = req.path;
    // A dot segment starts the path or follows a slash as "." or "%2e": most paths skip the expression.
    if (
      (path.charCodeAt(0) !== 0x2f || path.includes('/.') || path.includes('/%')) &&
      DOT_SEGMENT.test(path)
    ) {
      sendGatewayError(res, 400, 'dot segments are not allowed in paths');
      return;
    }
    const host = req.header('host');
    if (host !== undefined && !isValidHost(host)) {
      // Quotes, commas or spaces in Host would be carried into X-Forwarded-Host and routing: refuse them.
      sendGatewayError(res, 400, 'invalid Host');
      return;
    }
    const runtime = this.runtime;
    const m = runtime.router.match(host, path, req.method, req);
    if (m === null) {
      sendGatewayError(res, 404, 'no route', { path });
      return;
    }
    const route = m.value;
    // The proxy fills in the ids it sends upstream, so the access record carries them.
    req.locals = { route: route.name, domain: route.domain, requestId: undefined, traceparent: undefined };
    const ctx: FilterContext = { req, res, route, params: m.params, loop: this.loop, upstreamHeaders: [] };
    const filters = route.filters;
    for (let i = 0; i < filters.length; i++) {
      const verdict = filters[i]!.onRequest?.(ctx) ?? true;
      if (verdict === false) return;
      if (verdict !== true) return this.continueAsync(ctx, verdict, i + 1);
    }
    new ProxyCall(ctx).start();
  }

  /** The rest of a filter chain once a filter went async. */
  private async continueAsync(ctx: FilterContext, pending: Promise<boolean>, from: number): Promise<void> {
    if (!(await pending)) return;
    const filters = ctx.route.filters;
    for (let i = from; i < filters.length; i++) {
      if (!(await (filters[i]!.onRequest?.(ctx) ?? true))) return;
    }
    new ProxyCall(ctx).start();
  }

  snapshot(): LoopSnapshot {
    const now = this.loop.now();
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
    return { loop: this.loop.index, version: this.runtime.version, at: Date.now(), upstreams };
  }

  private publish(): void {
    this.post({ type: 'stats', loop: this.loop.index, snapshot: this.snapshot() });
  }

  private post(msg: GatewayMessage): void {
    this.channel.postMessage(msg);
  }

  close(): void {
    this.statsTimer.cancel();
    this.runtime.stop();
    this.channel.close();
  }
}
