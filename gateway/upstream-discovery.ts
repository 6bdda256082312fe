/**
 * The discovery sources of a configuration's upstreams, run on the main thread: started, kept or stopped
 * as each configuration in force says, and the targets they found merged into what is rolled out (in
 * place of the listed ones). Each answer calls `changed`, which rolls the configuration out again.
 */
import type { GatewayConfig } from './config.ts';
import { createDiscovery, type DiscoveredTarget } from './discovery.ts';

export class UpstreamDiscovery {
  /** Targets discovery found, by upstream. */
  private readonly found = new Map<string, DiscoveredTarget[]>();
  /** The running sources, by upstream, with the settings they run with. */
  private readonly running = new Map<string, { settings: string; stop: () => void }>();
  private readonly changed: () => void;

  constructor(changed: () => void) {
    this.changed = changed;
  }

  /** Starts, keeps or stops each upstream's discovery source as `config` says. */
  sync(config: GatewayConfig): void {
    for (const [name, d] of this.running) {
      const wanted = config.upstreams[name]?.discovery;
      if (wanted !== undefined && JSON.stringify(wanted) === d.settings) continue;
      d.stop();
      this.running.delete(name);
      // Settings changed: the targets found so far stay until the new source answers.
      if (wanted === undefined) this.found.delete(name);
    }
    for (const [name, u] of Object.entries(config.upstreams)) {
      if (u.discovery === undefined || this.running.has(name)) continue;
      const source = createDiscovery(u.discovery);
      const stop = source.start(
        (targets) => {
          this.found.set(name, targets);
          process.stdout.write(
            `netloom gateway: upstream ${name}: ${targets.length} target${targets.length === 1 ? '' : 's'} from ${source.description}\n`,
          );
          this.changed();
        },
        (err) => process.stderr.write(`netloom gateway: discovery for upstream ${name}: ${err.message}\n`),
      );
      this.running.set(name, { settings: JSON.stringify(u.discovery), stop });
    }
  }

  /** `config` with each discovered upstream's targets (the listed ones until discovery answered). */
  merge(config: GatewayConfig): GatewayConfig {
    if (this.found.size === 0) return config;
    const upstreams = { ...config.upstreams };
    for (const [name, targets] of this.found) {
      const u = upstreams[name];
      if (u === undefined) continue;
      upstreams[name] = { ...u, targets: targets.map((t) => ({ address: t.address, weight: t.weight })) };
    }
    return { ...config, upstreams };
  }

  /** Stops every source. */
  stop(): void {
    for (const d of this.running.values()) d.stop();
    this.running.clear();
  }
}
