import { extname } from 'node:path';
import { BroadcastChannel } from 'node:worker_threads';
import {
  bridgeToUsdt,
  type Engine,
  type EngineOptions,
  type LogShipper,
  type LogShipperOptions,
  logSamples,
  type MetricSample,
  renderExposition,
  serve,
  startLogShipper,
  type UsdtBridge,
} from '../core/index.ts';
import { adminHandler } from './admin.ts';
import type { CircuitStats } from './circuit-breaker.ts';
import { ConfigError, type GatewayConfig, loadFilters, pluginSpecifiers, validateConfig } from './config.ts';
import { type ConfigSource, FileConfigSource } from './config-source.ts';
import { gatewayChannels, gatewayUsdtProbes, type ReloadMessage } from './diagnostics.ts';
import type { GatewayLoopData, GatewayMessage, LoopSnapshot } from './dispatcher.ts';
import { type FaultSwitch, setFaultSwitch } from './fault.ts';
import type { FilterRegistry } from './filter.ts';
import {
  circuitStatsOf,
  faultRoutes,
  faultsOf,
  type LimitStats,
  limitStatsOf,
  mirrorStatsOf,
} from './governance-stats.ts';
import type { MirrorStats } from './mirror.ts';
import { gatewaySamples, metricsRoom, type ReloadCounts, spanSamples } from './scrape-metrics.ts';
import { createKeyTable, SharedKeyTable } from './shared-keys.ts';
import { createSharedMemory, SharedState } from './shared-state.ts';
import { startSpanExport } from './span.ts';
import { engineTls, upstreamTlsFingerprint } from './tls-config.ts';
import { UpstreamDiscovery } from './upstream-discovery.ts';

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  /** The configuration: a file path (JSON or YAML) or a source. */
  source: string | ConfigSource;
  /** Watch the source and reload on change (default true). */
  watch?: boolean;
  /**
   * Plugin modules defining filters, beside the configuration's own `plugins`: module specifiers, file URLs,
   * or paths (relative to the working directory). The main thread and every loop import them.
   */
  plugins?: readonly (string | URL)[];
  /**
   * Module every loop imports as its handler (default: the gateway's own, `createGatewayHandler`). A custom
   * module wraps what `createGatewayHandler(loop)` returns and exports that as its default.
   */
  handlerModule?: string | URL;
  /** Engine options for the listeners (address, loops and data come from the configuration). */
  engine?: Omit<EngineOptions, 'address' | 'loops' | 'data' | 'logRing'>;
  /**
   * Ship every loop's logs (and access records, with `http.accessLog: true` in the configuration) through a
   * log ring; stopped, after the listeners, by `stop()`.
   */
  log?: LogShipperOptions;
  /**
   * How long a reload waits for every loop to build the new version (ms, default 5000). A loop that does not
   * answer in time rolls the reload back everywhere.
   */
  reloadTimeout?: number;
}

export type { LimitStats } from './governance-stats.ts';

/** The outcome of a reload. */
export type ReloadResult =
  | {
      ok: true;
      /** The version in force. */
      version: number;
      /** Whether anything changed. */
      changed: boolean;
      /**
       * Sections that changed but apply only at the next start (`listeners`, `admin`, `http`, `plugins`):
       * their running values stay in force, and in `/config`.
       */
      restartRequired: readonly string[];
    }
  | { ok: false; version: number; problems: readonly string[] };

/** Sections a running gateway cannot change: its sockets, its HTTP server settings and its code. */
const RESTART_ONLY = ['listeners', 'admin', 'http', 'plugins', 'observability'] as const;

const HANDLER = new URL(`./handler${extname(new URL(import.meta.url).pathname)}`, import.meta.url);

/** A version being rolled out: which loops prepared it, and what failed. */
interface Rollout {
  readonly version: number;
  readonly config: GatewayConfig;
  readonly acked: Set<string>;
  readonly errors: string[];
  phase: 'prepare' | 'commit';
  settle: (() => void) | null;
  /** Ends the wait at once (the gateway is stopping). */
  cancel: (() => void) | null;
}

/**
 * A running gateway: one engine per listener, the admin endpoint, and the configuration watcher.
 *
 * Reloads are validated here (filter settings included), then rolled out in two phases: every loop builds
 * the new version beside the running one and says so (`prepared`); only when all have does the version
 * commit everywhere. A loop that refuses it, or does not answer within `reloadTimeout`, rolls it back on
 * every loop, and the running version stays in force. One reload runs at a time; edits made meanwhile are
 * read again when it ends. Methods may be called from the thread that started the gateway.
 */
export class Gateway {
  private versionInForce = 1;
  /** What the upstream TLS files in force held (see `upstreamTlsFingerprint`). */
  private tlsFiles = '';
  private configInForce: GatewayConfig;
  /** Whether the listeners serve HTTP/2 (`http.http2` at start: the `http` section applies at restarts). */
  private readonly startedHttp2: boolean;
  private loadedAtMs = Date.now();
  private adminEngine: Engine | null = null;
  private shipper: LogShipper | null = null;
  /** Exports the loops' spans (`observability.tracing`), or null. */
  private spanShipper: LogShipper | null = null;
  private usdt: UsdtBridge | null = null;
  private readonly reloadCounts: ReloadCounts = { applied: 0, unchanged: 0, refused: 0 };
  private readonly revisions = new Map<number, number>();
  /** The configuration as the source gave it (validated); in force with the discovered targets merged in. */
  private sourceConfig: GatewayConfig;
  /** The upstreams' discovery sources and the targets they found (in force instead of the listed ones). */
  private readonly discovery = new UpstreamDiscovery(() => this.refreshTargets());
  /** Versions rolled out because discovered targets changed. */
  private targetRollouts = 0;
  private queuedFromSource = false;
  /** What the reload in progress read from the source (in force once its rollout went through). */
  private candidateConfig: GatewayConfig | null = null;
  /** Where the configuration is read from (and watched). */
  readonly source: ConfigSource;
  /** One engine per listener of the configuration. */
  readonly listeners: Engine[] = [];

  /** The configuration version in force on every loop. */
  get version(): number {
    return this.versionInForce;
  }
  /** The configuration in force. */
  get config(): GatewayConfig {
    return this.configInForce;
  }
  /** When the configuration in force was committed (ms since the epoch). */
  get loadedAt(): number {
    return this.loadedAtMs;
  }
  /**
   * Rate limiting across the loops: requests each route's `rate-limit` filter refused, and the keys the
   * shared table evicted to make room (of `keySlots`); with limits on Redis, this process's calls to it,
   * the failed ones, the requests admitted (`failOpen`) or refused (`failClosed`) because Redis could not
   * answer, and the times a loop's Redis breaker opened.
   */
  limitStats(): LimitStats {
    return limitStatsOf(this.configInForce, this.sharedState());
  }

  /**
   * The circuits of the routes' `circuit-breaker` filters, summed over the loops: `route:NAME#N` for a
   * route's Nth breaker, `upstream:NAME` for a circuit its upstream's routes share.
   */
  circuitStats(): Record<string, CircuitStats> {
    return circuitStatsOf(this.configInForce, this.sharedState());
  }

  /**
   * Every metric of the gateway in the Prometheus text format (the admin endpoint's `GET /metrics`): each
   * listener's engine counters and the series its loops keep (requests, latencies, pools...), summed over
   * the loops, and what the main thread knows (reloads, rate limits, circuits, mirrors, the log pipeline).
   * Reads shared memory only: no message to the loops.
   */
  metrics(): string {
    const samples: MetricSample[] = [];
    for (const engine of this.listeners) samples.push(...engine.metricSamples());
    samples.push(
      ...gatewaySamples({
        version: this.version,
        reloads: this.reloadCounts,
        targetRollouts: this.targetRollouts,
        limits: this.limitStats(),
        circuits: this.circuitStats(),
        mirrors: this.mirrorStats(),
      }),
    );
    if (this.shipper !== null) samples.push(...logSamples(this.shipper.stats()));
    if (this.spanShipper !== null) samples.push(...spanSamples(this.spanShipper.stats()));
    return renderExposition(samples);
  }

  /** The mirrors of the routes that have one (`routes[].mirror`), summed over the loops. */
  mirrorStats(): Record<string, MirrorStats> {
    return mirrorStatsOf(this.configInForce, this.sharedState());
  }

  /** The routes with a `fault` filter and their runtime switch (`config`: as configured). */
  faults(): Record<string, FaultSwitch> {
    return faultsOf(this.configInForce, this.sharedState());
  }

  /**
   * Switches the faults of `route` on or off at runtime (on every loop, across reloads), or back to what
   * the configuration says; false when no route of that name has a `fault` filter.
   */
  switchFaults(route: string, to: FaultSwitch): boolean {
    if (!faultRoutes(this.configInForce).includes(route)) return false;
    setFaultSwitch(this.sharedState(), route, to);
    return true;
  }

  private sharedState(): SharedState {
    this.sharedView ??= new SharedState(this.shared, this.keys);
    return this.sharedView;
  }

  /** The admin endpoint's engine, when the configuration has one. */
  get admin(): Engine | null {
    return this.adminEngine;
  }
  /** The log shipper, when `log` was given. */
  get logs(): LogShipper | null {
    return this.shipper;
  }
  /** The filters the configuration may use (stock and plugins'). */
  readonly filters: FilterRegistry;
  /** Plugin module specifiers in force (the configuration's, then the options'). */
  readonly plugins: readonly string[];
  private readonly channel: BroadcastChannel;
  private readonly channelName: string;
  private readonly shared = createSharedMemory();
  private readonly keys = createKeyTable();
  /** The main thread's view of the loops' shared memory (for the admin endpoint). */
  private sharedView: SharedState | null = null;
  private readonly loopSnapshots = new Map<string, LoopSnapshot>();
  private reloadTimeout = 5000;
  private rollout: Rollout | null = null;
  private running: Promise<ReloadResult> | null = null;
  private queued: Promise<ReloadResult> | null = null;
  private unwatch: (() => void) | null = null;
  private attempted = 1;
  private stopped = false;
  private channelClosed = false;

  /** @internal Use {@link startGateway}. */
  constructor(
    source: ConfigSource,
    config: GatewayConfig,
    filters: FilterRegistry,
    plugins: readonly string[],
  ) {
    this.source = source;
    this.configInForce = config;
    this.sourceConfig = config;
    this.startedHttp2 = config.http.http2;
    this.tlsFiles = upstreamTlsFingerprint(config);
    this.filters = filters;
    this.plugins = plugins;
    this.channelName = `netloom-gateway-${process.pid}-${Math.random().toString(36).slice(2)}`;
    this.channel = new BroadcastChannel(this.channelName);
    this.channel.unref();
    this.channel.onmessage = (event: unknown) => this.message((event as { data: GatewayMessage }).data);
  }

  /** @internal */
  async start(options: GatewayOptions): Promise<void> {
    if (options.reloadTimeout !== undefined) this.reloadTimeout = options.reloadTimeout;
    const module = options.handlerModule ?? HANDLER;
    if (options.log !== undefined) this.shipper = await startLogShipper(options.log);
    const tracing = this.config.observability.tracing;
    if (tracing !== undefined) this.spanShipper = await startSpanExport(tracing);
    // The main thread publishes the reload probe only (each loop bridges its own channels, a loop on this
    // thread included): one bridge a channel a thread, or probes would fire twice.
    if (this.config.observability.dtrace)
      this.usdt = bridgeToUsdt(
        'netloom',
        gatewayUsdtProbes.filter((p) => p.channel === 'netloom:gateway:reload'),
      );
    for (const [i, listener] of this.config.listeners.entries()) {
      const data: GatewayLoopData = {
        channel: this.channelName,
        config: this.config,
        version: this.version,
        listener: i,
        plugins: [...this.plugins],
        shared: this.shared,
        keys: this.keys,
        spans: this.spanShipper?.ring,
        loopBase: this.listeners.reduce((n, e) => n + e.loops, 0),
      };
      const engine = await serve(module, {
        // Sized from the configuration; an engine option of the caller's wins.
        ...metricsRoom(this.config),
        ...options.engine,
        address: listener.address,
        loops: listener.loops,
        tls: listener.tls === undefined ? undefined : engineTls(listener.tls, this.startedHttp2),
        data,
        logRing: this.logs?.ring ?? null,
      });
      // A loop that will not be restarted gives back the rate-limit places its requests held.
      const loopBase = data.loopBase!;
      engine.on('loopFailed', (index) => SharedKeyTable.reclaimInFlight(this.keys, loopBase + index));
      this.listeners.push(engine);
    }
    if (this.config.admin !== undefined)
      this.adminEngine = await serve(adminHandler(this), { address: this.config.admin.address, loops: 1 });
    // Discovery starts once the loops run: each answer rolls the targets out to them.
    this.discovery.sync(this.sourceConfig);
    if (options.watch ?? true) {
      this.unwatch = this.source.watch(() => {
        this.reload().catch((err: unknown) => {
          process.stderr.write(`netloom gateway: reload failed: ${(err as Error).message}\n`);
        });
      });
    }
  }

  /**
   * Re-reads the source and rolls the new version out when it is valid and changed. One reload runs at a
   * time: a call while one runs is answered by the next one, which reads the source again after it.
   */
  reload(): Promise<ReloadResult> {
    return this.enqueue(true);
  }

  /**
   * One reload or target refresh at a time; one more queued behind it, which reads the source if any of
   * the calls it stands for asked to.
   */
  private enqueue(fromSource: boolean): Promise<ReloadResult> {
    if (this.running === null) return this.startReload(fromSource);
    this.queuedFromSource ||= fromSource;
    this.queued ??= this.running.then(() => {
      this.queued = null;
      const read = this.queuedFromSource;
      this.queuedFromSource = false;
      return this.startReload(read);
    });
    return this.queued;
  }

  /** Discovery changed an upstream's targets: the configuration in force goes out again with them. */
  private refreshTargets(): void {
    if (this.stopped) return;
    this.enqueue(false).then(
      (r) => {
        if (!r.ok)
          process.stderr.write(`netloom gateway: discovered targets not applied: ${r.problems.join('; ')}\n`);
      },
      (err: Error) =>
        process.stderr.write(`netloom gateway: discovered targets not applied: ${err.message}\n`),
    );
  }

  private startReload(fromSource = true): Promise<ReloadResult> {
    const before = this.version;
    const run: Promise<ReloadResult> = this.doReload(fromSource)
      .then((result) => {
        if (!fromSource) {
          // Not a reload: the source revision the targets were merged into carries over.
          const revision = this.revisions.get(before);
          if (result.ok && revision !== undefined) this.revisions.set(result.version, revision);
          if (result.ok && result.changed) this.targetRollouts++;
          return result;
        }
        const candidate = this.candidateConfig;
        this.candidateConfig = null;
        if (result.ok && candidate !== null) {
          this.sourceConfig = candidate;
          this.discovery.sync(candidate);
        }
        if (result.ok) this.sourceApplied(result.version);
        const counts = this.reloadCounts;
        if (!result.ok) counts.refused++;
        else if (result.changed) counts.applied++;
        else counts.unchanged++;
        if (gatewayChannels.reload.hasSubscribers)
          gatewayChannels.reload.publish({ result } satisfies ReloadMessage);
        return result;
      })
      .finally(() => {
        if (this.running === run) this.running = null;
      });
    this.running = run;
    return run;
  }

  private async doReload(fromSource = true): Promise<ReloadResult> {
    if (this.stopped) return this.stoppingResult();
    let next: GatewayConfig;
    try {
      if (fromSource) {
        next = validateConfig(await this.source.load(), this.source.description, this.filters);
        if (this.stopped) return this.stoppingResult();
        // In force only if the rollout goes through (startReload commits it): a refused one must not come
        // back with the next discovery change.
        this.candidateConfig = next;
      } else next = this.sourceConfig;
      next = this.discovery.merge(next);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
      const revision = this.source.revision === undefined ? '' : ` (source revision ${this.source.revision})`;
      process.stderr.write(
        `netloom gateway: reload refused${revision}, keeping version ${this.version}:\n  ${problems.join('\n  ')}\n`,
      );
      return { ok: false, version: this.version, problems };
    }
    const restartRequired: string[] = [];
    // A listener whose TLS settings alone changed takes them live (certificates, SNI, client CAs...).
    const tlsChanged = this.tlsOnlyChanges(next.listeners);
    if (tlsChanged !== null && tlsChanged.length > 0) {
      const problems = await this.applyTls(next.listeners, tlsChanged);
      if (problems.length > 0) {
        process.stderr.write(
          `netloom gateway: reload refused, keeping version ${this.version}:\n  ${problems.join('\n  ')}\n`,
        );
        return { ok: false, version: this.version, problems };
      }
    }
    for (const key of RESTART_ONLY) {
      if (key === 'listeners' && tlsChanged !== null) continue;
      if (JSON.stringify(next[key]) === JSON.stringify(this.config[key])) continue;
      restartRequired.push(key);
      next = { ...next, [key]: this.config[key] };
    }
    // Said when the source changed; a rollout of discovered targets carries the same pending change.
    if (restartRequired.length > 0 && fromSource) {
      process.stderr.write(
        `netloom gateway: ${restartRequired.join(', ')} changed: that applies at the next start; applying the rest\n`,
      );
    }
    // Upstream TLS files (a CA, a client certificate) renewed at the same paths count as a change: the loops
    // read them again when they build the version.
    const files = upstreamTlsFingerprint(next);
    if (JSON.stringify(next) === JSON.stringify(this.config) && files === this.tlsFiles)
      return { ok: true, version: this.version, changed: false, restartRequired };
    // A number never used before: loops that prepared a version rolled back must not take it for this one.
    this.attempted = Math.max(this.attempted, this.version) + 1;
    const version = this.attempted;
    const problems = await this.rollOut(version, next);
    if (problems.length > 0) {
      // The TLS settings go back with the rest.
      if (tlsChanged !== null && tlsChanged.length > 0)
        await this.applyTls(this.config.listeners, tlsChanged);
      process.stderr.write(
        `netloom gateway: reload rolled back, keeping version ${this.version}:\n  ${problems.join('\n  ')}\n`,
      );
      return { ok: false, version: this.version, problems };
    }
    this.tlsFiles = files;
    return { ok: true, version, changed: true, restartRequired };
  }

  /**
   * The listeners whose `tls` alone differs in `next` (the rest equal, TLS on before and after), or null when
   * the listeners differ in anything else (a restart applies those).
   */
  private tlsOnlyChanges(next: GatewayConfig['listeners']): number[] | null {
    const current = this.config.listeners;
    if (next.length !== current.length) return null;
    const changed: number[] = [];
    for (let i = 0; i < next.length; i++) {
      const { tls: a, ...restA } = current[i]!;
      const { tls: b, ...restB } = next[i]!;
      if (JSON.stringify(restA) !== JSON.stringify(restB) || (a === undefined) !== (b === undefined))
        return null;
      if (JSON.stringify(a) !== JSON.stringify(b)) changed.push(i);
    }
    return changed;
  }

  /** Gives listeners `indices` the TLS settings of `listeners`; the problems, by path. */
  private async applyTls(listeners: GatewayConfig['listeners'], indices: number[]): Promise<string[]> {
    const problems: string[] = [];
    for (const i of indices) {
      try {
        // `http` applies at the next start: the protocols offered stay those the listener started with.
        await this.listeners[i]!.updateTls(engineTls(listeners[i]!.tls!, this.startedHttp2));
      } catch (err) {
        problems.push(`listeners.${i}.tls: ${(err as Error).message}`);
      }
    }
    return problems;
  }

  private stoppingResult(): ReloadResult {
    return { ok: false, version: this.version, problems: ['the gateway is stopping'] };
  }

  /** Every loop's id (`listener:index`). */
  private loopIds(): string[] {
    const ids: string[] = [];
    this.listeners.forEach((e, i) => {
      for (let k = 0; k < e.loops; k++) ids.push(`${i}:${k}`);
    });
    return ids;
  }

  /** Prepares `config` as `version` on every loop, then commits it, or aborts it; returns the problems. */
  private async rollOut(version: number, config: GatewayConfig): Promise<string[]> {
    const ids = this.loopIds();
    const rollout: Rollout = {
      version,
      config,
      acked: new Set(),
      errors: [],
      phase: 'prepare',
      settle: null,
      cancel: null,
    };
    this.rollout = rollout;
    try {
      const prepared = await this.collect(rollout, ids, { type: 'prepare', version, config });
      if (this.stopped) return ['the gateway stopped during the reload'];
      if (!prepared || rollout.errors.length > 0) {
        this.post({ type: 'abort', version });
        const problems = [...rollout.errors];
        const missing = ids.filter((id) => !rollout.acked.has(id));
        if (!prepared && missing.length > 0)
          problems.push(
            `loops ${missing.join(', ')} did not prepare version ${version} within ${this.reloadTimeout} ms`,
          );
        return problems;
      }
      // In force from here: a loop that syncs from now on (restarted, or it missed the commit) gets this one.
      this.versionInForce = version;
      this.configInForce = config;
      this.loadedAtMs = Date.now();
      rollout.phase = 'commit';
      rollout.acked.clear();
      if (!(await this.collect(rollout, ids, { type: 'commit', version }))) {
        const missing = ids.filter((id) => !rollout.acked.has(id));
        process.stderr.write(
          `netloom gateway: loops ${missing.join(', ')} have not confirmed version ${version} yet (they sync when they answer)\n`,
        );
      }
      return [];
    } finally {
      this.rollout = null;
    }
  }

  /** Posts `msg` and waits until every loop in `ids` acknowledged it (true), or the timeout (false). */
  private collect(rollout: Rollout, ids: readonly string[], msg: GatewayMessage): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        rollout.settle = rollout.cancel = null;
        resolve(ok);
      };
      const timer = setTimeout(() => done(false), this.reloadTimeout);
      rollout.settle = () => {
        if (rollout.errors.length === 0 && !ids.every((id) => rollout.acked.has(id))) return;
        done(true);
      };
      rollout.cancel = () => done(false);
      this.post(msg);
    });
  }

  private message(msg: GatewayMessage): void {
    switch (msg.type) {
      case 'sync': {
        // A loop booting (or restarted): the version in force first, then the one being prepared, if any.
        this.post({ type: 'config', to: msg.loop, version: this.version, config: this.config });
        const r = this.rollout;
        if (r !== null && r.phase === 'prepare' && !r.acked.has(msg.loop))
          this.post({ type: 'prepare', version: r.version, config: r.config });
        return;
      }
      case 'stats':
        this.loopSnapshots.set(msg.snapshot.loop, msg.snapshot);
        return;
      case 'prepared': {
        const r = this.rollout;
        if (r === null || r.phase !== 'prepare' || msg.version !== r.version) return;
        r.acked.add(msg.loop);
        if (msg.error !== undefined) r.errors.push(`loop ${msg.loop}: ${msg.error}`);
        r.settle?.();
        return;
      }
      case 'committed': {
        const r = this.rollout;
        if (r === null || r.phase !== 'commit' || msg.version !== r.version) return;
        r.acked.add(msg.loop);
        r.settle?.();
        return;
      }
      default:
        return;
    }
  }

  private post(msg: GatewayMessage): void {
    if (this.channelClosed) return; // stopped: no loop listens any more
    this.channel.postMessage(msg);
  }

  /** The latest snapshot each loop published (at most a second old), by loop id. */
  snapshots(): LoopSnapshot[] {
    return [...this.loopSnapshots.values()].sort((a, b) =>
      a.loop.localeCompare(b.loop, 'en', { numeric: true }),
    );
  }

  /** The source revision (etcd's) each configuration version came from, for the versions still served. */
  revisionOf(version: number): number | undefined {
    return this.revisions.get(version);
  }

  /** @internal The source's last read is in force as `version` (at start, and after a reload). */
  sourceApplied(version: number): void {
    this.source.applied?.();
    const revision = this.source.revision;
    if (revision === undefined) return;
    this.revisions.set(version, revision);
    // Only versions a loop may still serve are kept (a rollout in progress, the one in force).
    for (const v of this.revisions.keys()) if (v < version - 16) this.revisions.delete(v);
  }

  /** Port of listener `i` (0 by default). */
  port(i = 0): number {
    return this.listeners[i]?.port ?? 0;
  }

  /** Stops watching, stops every listener gracefully (and the admin endpoint), resolves when all are down. */
  async stop(deadline?: number): Promise<void> {
    this.stopped = true;
    this.discovery.stop();
    this.unwatch?.();
    this.unwatch = null;
    this.rollout?.cancel?.();
    await Promise.all(this.listeners.map((e) => e.stop(deadline === undefined ? {} : { deadline })));
    await this.admin?.stop({ deadline: 1000 });
    await this.logs?.stop();
    // Spans get what is left of the stop (2 s at most): a collector that does not answer does not hold it.
    await this.spanShipper?.stop(Math.min(deadline ?? 2000, 2000));
    this.usdt?.disable();
    this.channelClosed = true;
    this.channel.close();
  }
}

/**
 * Loads the plugins and the configuration, validates it (filter settings included), then starts the
 * listeners and the admin endpoint. Rejects with a {@link ConfigError} naming every problem.
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const source = typeof options.source === 'string' ? new FileConfigSource(options.source) : options.source;
  const input = await source.load();
  const listed = Array.isArray((input as { plugins?: unknown } | null)?.plugins)
    ? (input as { plugins: unknown[] }).plugins.filter((p): p is string => typeof p === 'string')
    : [];
  const extra = pluginSpecifiers(
    (options.plugins ?? []).map((p) => (p instanceof URL ? p.href : p)),
    process.cwd(),
  );
  const plugins = [...pluginSpecifiers(listed, source.directory ?? process.cwd()), ...extra];
  const filters = await loadFilters(plugins, source.description);
  const config = validateConfig(input, source.description, filters);
  const gateway = new Gateway(source, config, filters, plugins);
  try {
    await gateway.start(options);
  } catch (err) {
    await gateway.stop(0);
    throw err;
  }
  gateway.sourceApplied(gateway.version);
  return gateway;
}
