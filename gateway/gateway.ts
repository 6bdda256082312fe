import { extname } from 'node:path';
import { BroadcastChannel } from 'node:worker_threads';
import {
  type Engine,
  type EngineOptions,
  type LogShipper,
  type LogShipperOptions,
  serve,
  startLogShipper,
} from '../core/index.ts';
import { adminHandler } from './admin.ts';
import { ConfigError, type GatewayConfig, validateConfig } from './config.ts';
import { type ConfigSource, FileConfigSource } from './config-source.ts';
import type { GatewayLoopData, GatewayMessage, LoopSnapshot } from './dispatcher.ts';

/** Options of {@link startGateway}. */
export interface GatewayOptions {
  /** The configuration: a file path (JSON or YAML) or a source. */
  source: string | ConfigSource;
  /** Watch the source and reload on change (default true). */
  watch?: boolean;
  /**
   * Module every loop imports as its handler (default: netloom's gateway handler). A custom module registers
   * its filters with `registerFilter`, then re-exports `netloom/gateway/handler`'s default.
   */
  handlerModule?: string | URL;
  /** Engine options for the listeners (address, loops and data come from the configuration). */
  engine?: Omit<EngineOptions, 'address' | 'loops' | 'data' | 'logRing'>;
  /**
   * Ship every loop's logs (and access records, with `http.accessLog: true` in the configuration) through a
   * log ring; stopped, after the listeners, by `stop()`.
   */
  log?: LogShipperOptions;
}

/** The outcome of a reload. */
export type ReloadResult =
  | { ok: true; version: number; changed: boolean }
  | { ok: false; version: number; problems: readonly string[] };

const HANDLER = new URL(`./handler${extname(new URL(import.meta.url).pathname)}`, import.meta.url);

/**
 * A running gateway: one engine per listener, the admin endpoint, and the configuration watcher. Reloads
 * are validated here, then broadcast to every loop, which builds the new routing table and swaps it in
 * atomically; an invalid configuration is refused with every problem named and the running one stays.
 */
export class Gateway {
  version = 1;
  config: GatewayConfig;
  loadedAt = Date.now();
  readonly source: ConfigSource;
  readonly listeners: Engine[] = [];
  admin: Engine | null = null;
  /** The log shipper, when `log` was given. */
  logs: LogShipper | null = null;
  private readonly channel: BroadcastChannel;
  private readonly channelName: string;
  private readonly loopSnapshots = new Map<string, LoopSnapshot>();
  private readonly applied = new Map<number, { loops: Set<number>; errors: string[] }>();
  private unwatch: (() => void) | null = null;
  private reloading: Promise<ReloadResult> | null = null;
  private attempted = 1;

  /** @internal Use {@link startGateway}. */
  constructor(source: ConfigSource, config: GatewayConfig) {
    this.source = source;
    this.config = config;
    this.channelName = `netloom-gateway-${process.pid}-${Math.random().toString(36).slice(2)}`;
    this.channel = new BroadcastChannel(this.channelName);
    this.channel.unref();
    this.channel.onmessage = (event: unknown) => this.message((event as { data: GatewayMessage }).data);
  }

  /** @internal */
  async start(options: GatewayOptions): Promise<void> {
    const module = options.handlerModule ?? HANDLER;
    if (options.log !== undefined) this.logs = await startLogShipper(options.log);
    for (const [i, listener] of this.config.listeners.entries()) {
      const data: GatewayLoopData = { channel: this.channelName, config: this.config, version: this.version };
      const engine = await serve(module, {
        ...options.engine,
        address: listener.address,
        loops: listener.loops,
        data: { ...data, listener: i },
        logRing: this.logs?.ring ?? null,
      });
      this.listeners.push(engine);
    }
    if (this.config.admin !== undefined)
      this.admin = await serve(adminHandler(this), { address: this.config.admin.address, loops: 1 });
    if (options.watch ?? true) this.unwatch = this.source.watch(() => void this.reload());
  }

  /** Re-reads the source; applies it when valid and changed. Concurrent calls share one reload. */
  reload(): Promise<ReloadResult> {
    if (this.reloading !== null) return this.reloading;
    this.reloading = this.doReload().finally(() => {
      this.reloading = null;
    });
    return this.reloading;
  }

  private async doReload(): Promise<ReloadResult> {
    let next: GatewayConfig;
    try {
      next = validateConfig(await this.source.load(), this.source.description);
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
      process.stderr.write(
        `netloom gateway: reload refused, keeping version ${this.version}:\n  ${problems.join('\n  ')}\n`,
      );
      return { ok: false, version: this.version, problems };
    }
    if (JSON.stringify(next) === JSON.stringify(this.config))
      return { ok: true, version: this.version, changed: false };
    if (JSON.stringify(next.listeners) !== JSON.stringify(this.config.listeners)) {
      process.stderr.write('netloom gateway: listener changes need a restart; applying the rest\n');
      next = { ...next, listeners: this.config.listeners };
    }
    if (JSON.stringify(next.admin) !== JSON.stringify(this.config.admin)) {
      process.stderr.write('netloom gateway: admin address changes need a restart; applying the rest\n');
      next = { ...next, admin: this.config.admin };
    }
    // A number never used before: loops that applied a reload which failed elsewhere must take the retry too.
    this.attempted = Math.max(this.attempted, this.version) + 1;
    const version = this.attempted;
    const expected = this.listeners.reduce((n, e) => n + e.loops, 0);
    const done = this.whenApplied(version, expected);
    this.channel.postMessage({ type: 'config', version, config: next } satisfies GatewayMessage);
    const errors = await done;
    if (errors.length > 0) return { ok: false, version: this.version, problems: errors };
    this.version = version;
    this.config = next;
    this.loadedAt = Date.now();
    return { ok: true, version, changed: true };
  }

  private whenApplied(version: number, loops: number): Promise<string[]> {
    return new Promise((resolve) => {
      const entry = { loops: new Set<number>(), errors: [] as string[] };
      this.applied.set(version, entry);
      const check = setInterval(() => {
        if (entry.loops.size >= loops) {
          clearInterval(check);
          this.applied.delete(version);
          resolve(entry.errors);
        }
      }, 5);
      // A loop that restarted mid-reload reports nothing (it syncs to the latest version when it is back):
      // do not wait forever.
      setTimeout(() => {
        clearInterval(check);
        this.applied.delete(version);
        if (entry.loops.size < loops) {
          process.stderr.write(
            `netloom gateway: ${entry.loops.size} of ${loops} loops acknowledged version ${version}\n`,
          );
        }
        resolve(entry.errors);
      }, 5000).unref();
    });
  }

  private message(msg: GatewayMessage): void {
    if (msg.type === 'sync') {
      if (msg.version < this.version) {
        this.channel.postMessage({
          type: 'config',
          version: this.version,
          config: this.config,
        } satisfies GatewayMessage);
      }
    } else if (msg.type === 'stats') {
      this.loopSnapshots.set(`${msg.snapshot.loop}`, msg.snapshot);
    } else if (msg.type === 'applied') {
      const entry = this.applied.get(msg.version);
      if (entry === undefined) return;
      entry.loops.add(msg.loop);
      if (msg.error !== undefined) entry.errors.push(`loop ${msg.loop}: ${msg.error}`);
    }
  }

  /** The latest snapshot each loop published (at most a second old). */
  snapshots(): LoopSnapshot[] {
    return [...this.loopSnapshots.values()].sort((a, b) => a.loop - b.loop);
  }

  /** Port of listener `i` (0 by default). */
  port(i = 0): number {
    return this.listeners[i]?.port ?? 0;
  }

  /** Stops watching, stops every listener gracefully (and the admin endpoint), resolves when all are down. */
  async stop(deadline?: number): Promise<void> {
    this.unwatch?.();
    await Promise.all(this.listeners.map((e) => e.stop(deadline === undefined ? {} : { deadline })));
    await this.admin?.stop({ deadline: 1000 });
    await this.logs?.stop();
    this.channel.close();
  }
}

/** Loads and validates the configuration, then starts the listeners and the admin endpoint. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const source = typeof options.source === 'string' ? new FileConfigSource(options.source) : options.source;
  const config = validateConfig(await source.load(), source.description);
  const gateway = new Gateway(source, config);
  try {
    await gateway.start(options);
  } catch (err) {
    await gateway.stop(0);
    throw err;
  }
  return gateway;
}
