/**
 * The gateway's configuration from etcd: the whole configuration in one key (JSON or YAML), or spread under
 * a prefix (`<prefix>base` for listeners, admin, http and the rest; `<prefix>routes/<name>` and
 * `<prefix>upstreams/<name>`, one JSON or YAML value each; routes ordered by key). Read at start, then
 * watched from the revision read.
 *
 * Never stale in silence: a watch that fails, is cancelled, or would start from a compacted revision leads
 * to a full re-read (a reload) and a new watch from the revision then served; a check every `checkInterval`
 * compares what is served with what etcd holds and reloads when they differ. After each applied version a
 * cache file keeps the configuration and its revision, so a gateway that starts while etcd is down serves
 * the last known configuration (`fromCache`, in the admin's `/config`) and catches up once etcd answers.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { ConfigSource } from './config-source.ts';
import { GatewayError } from './errors.ts';
import { EtcdClient, type EtcdKeyValue, type WatchEnd } from './etcd-client.ts';

/** Settings of an {@link EtcdConfigSource}. */
export interface EtcdSourceOptions {
  /** Client URLs of the etcd cluster. */
  endpoints: readonly string[];
  /** The key holding the whole configuration; or give `prefix`. */
  key?: string;
  /** The prefix under which `base`, `routes/` and `upstreams/` live; it ends in `/` (a TypeError if not). */
  prefix?: string;
  /** Where the last applied configuration is kept (JSON); none when absent. */
  cacheFile?: string;
  /** Milliseconds between checks of the served revision against etcd's (default 10 s; 0: none). */
  checkInterval?: number;
  /** Milliseconds an etcd call may take (default 2000). */
  timeout?: number;
  /** Where the configuration's relative plugin paths resolve. */
  directory?: string;
  /** Logs the source's decisions (a broken watch, a re-read, the cache); stderr by default. */
  log?: (message: string, fields: Record<string, unknown>) => void;
}

/** What the admin endpoint shows of the source. */
export interface EtcdSourceStatus {
  /** The etcd revision of the configuration last read (the one in force once applied). */
  revision: number;
  /** The configuration in force came from the cache file: etcd did not answer at start. */
  fromCache: boolean;
  /** Watches that ended and were started again (compaction, cancel, failure). */
  rewatches: number;
  /** When the served revision was last confirmed against etcd (epoch ms; 0: never). */
  checkedAt: number;
}

interface Snapshot {
  revision: number;
  /** The newest mod revision among the keys read, and how many there were (the check compares both). */
  maxModRevision: number;
  keys: number;
  config: unknown;
}

interface CacheFile {
  source: string;
  /** The key or prefix the configuration was read from (a cache of another is not served). */
  target: string;
  revision: number;
  config: unknown;
}

function parseValue(kv: EtcdKeyValue): unknown {
  const text = kv.value.trim();
  try {
    return parseYaml(text); // YAML holds JSON, and flow style like {name: x} too
  } catch (err) {
    // Validation reports it with the key and revision; the running configuration stays.
    throw new GatewayError(
      'ERR_GATEWAY_ETCD',
      `etcd key ${kv.key} (revision ${kv.modRevision}) is not JSON or YAML: ${(err as Error).message.split('\n')[0]}`,
    );
  }
}

/** A {@link ConfigSource} on etcd v3. */
export class EtcdConfigSource implements ConfigSource {
  readonly description: string;
  readonly directory: string | undefined;
  readonly client: EtcdClient;
  private readonly key: string | undefined;
  private readonly prefix: string | undefined;
  private readonly cacheFile: string | undefined;
  private readonly checkInterval: number;
  private readonly log: (message: string, fields: Record<string, unknown>) => void;
  /** What the last load read (written to the cache once applied). */
  private last: Snapshot | null = null;
  /** What is in force (the last applied load). */
  private served: Snapshot | null = null;
  private fromCache = false;
  private rewatches = 0;
  private checkedAt = 0;

  constructor(options: EtcdSourceOptions) {
    if ((options.key === undefined) === (options.prefix === undefined))
      throw new TypeError('an etcd configuration source takes a key or a prefix');
    if (options.prefix !== undefined) checkPrefix(options.prefix);
    this.client = new EtcdClient({ endpoints: options.endpoints, timeout: options.timeout ?? 2000 });
    this.key = options.key;
    this.prefix = options.prefix;
    this.cacheFile = options.cacheFile;
    this.checkInterval = options.checkInterval ?? 10_000;
    this.directory = options.directory;
    this.log =
      options.log ??
      ((message, fields) => process.stderr.write(`netloom gateway: ${message} ${JSON.stringify(fields)}\n`));
    this.description = `etcd ${this.client.endpoints.join(',')} ${options.key !== undefined ? `key ${options.key}` : `prefix ${options.prefix}`}`;
  }

  /** The revision, cache and watch figures (for `/config`). */
  status(): EtcdSourceStatus {
    return {
      revision: this.served?.revision ?? 0,
      fromCache: this.fromCache,
      rewatches: this.rewatches,
      checkedAt: this.checkedAt,
    };
  }

  /** The etcd revision of the configuration `load` read last (in force once the gateway applied it). */
  get revision(): number {
    return this.last?.revision ?? 0;
  }

  async load(): Promise<unknown> {
    try {
      const snap = await this.read();
      this.last = snap;
      return structuredClone(snap.config);
    } catch (err) {
      // At start only (nothing served yet), the cache stands in for etcd.
      if (this.served === null && this.cacheFile !== undefined) {
        const cached = this.readCache();
        if (cached !== null) {
          this.log('etcd unavailable: serving the cached configuration', {
            revision: cached.revision,
            cache: this.cacheFile,
            error: (err as Error).message,
          });
          this.fromCache = true;
          this.last = { revision: cached.revision, maxModRevision: -1, keys: -1, config: cached.config };
          return structuredClone(cached.config);
        }
      }
      throw err;
    }
  }

  /** The gateway applied what the last load read: it is served now, and cached. */
  applied(): void {
    const snap = this.last;
    if (snap === null) return;
    const wasCached = snap.maxModRevision === -1;
    this.served = snap;
    if (!wasCached) this.fromCache = false;
    if (this.cacheFile === undefined || wasCached) return;
    const file: CacheFile = {
      source: this.description,
      target: this.key ?? `prefix:${this.prefix}`,
      revision: snap.revision,
      config: snap.config,
    };
    try {
      const tmp = `${this.cacheFile}.${process.pid}.tmp`;
      writeFileSync(tmp, `${JSON.stringify(file)}\n`);
      renameSync(tmp, this.cacheFile); // whole or not at all: a crash mid-write leaves the old cache
    } catch (err) {
      this.log('configuration cache not written', { cache: this.cacheFile, error: (err as Error).message });
    }
  }

  private readCache(): CacheFile | null {
    try {
      const c = JSON.parse(readFileSync(this.cacheFile!, 'utf8')) as CacheFile;
      if (c.target !== (this.key ?? `prefix:${this.prefix}`)) {
        this.log('configuration cache ignored: it holds another key or prefix', {
          cache: this.cacheFile,
          target: c.target,
        });
        return null;
      }
      return typeof c.revision === 'number' && c.config !== undefined ? c : null;
    } catch {
      return null;
    }
  }

  /** Reads the configuration and the revision it is at. */
  private async read(): Promise<Snapshot> {
    if (this.key !== undefined) {
      const { revision, kvs } = await this.client.range(this.key);
      const kv = kvs[0];
      if (kv === undefined)
        throw new GatewayError('ERR_GATEWAY_ETCD', `etcd has no key ${this.key} (revision ${revision})`);
      return { revision, maxModRevision: kv.modRevision, keys: 1, config: parseValue(kv) };
    }
    const prefix = this.prefix!;
    const { revision, kvs } = await this.client.range(prefix, true);
    let base: unknown = {};
    const routes: unknown[] = [];
    const upstreams: Record<string, unknown> = Object.create(null);
    let max = 0;
    for (const kv of kvs) {
      max = Math.max(max, kv.modRevision);
      const rest = kv.key.slice(prefix.length);
      if (rest === 'base') base = parseValue(kv);
      else if (rest.startsWith('routes/')) routes.push(parseValue(kv));
      else if (rest.startsWith('upstreams/')) upstreams[rest.slice('upstreams/'.length)] = parseValue(kv);
      // Other keys under the prefix (a push's marker) are not configuration.
    }
    if (base === null || typeof base !== 'object' || Array.isArray(base))
      throw new GatewayError('ERR_GATEWAY_ETCD', `etcd key ${prefix}base is not an object`);
    return {
      revision,
      maxModRevision: max,
      keys: kvs.length,
      config: { ...(base as object), upstreams: { ...upstreams }, routes },
    };
  }

  /** Whether etcd holds something other than what is served. */
  private async stale(): Promise<boolean> {
    const served = this.served;
    if (served === null) return false;
    if (served.maxModRevision === -1) return true; // served from the cache: etcd answers again
    const target = this.key ?? this.prefix!;
    const { kvs } = await this.client.range(target, this.key === undefined);
    let max = 0;
    for (const kv of kvs) max = Math.max(max, kv.modRevision);
    this.checkedAt = Date.now();
    return max !== served.maxModRevision || kvs.length !== served.keys;
  }

  watch(onChange: () => void): () => void {
    let stopped = false;
    let current: { close(): void } | null = null;
    let retry: NodeJS.Timeout | null = null;
    let backoff = 250;
    const target = this.key ?? this.prefix!;
    /** A watch started after one ended: once it is up, etcd is reachable, and what it holds is read. */
    let rewatched = false;
    const start = () => {
      if (stopped) return;
      // From the revision read last (served or refused): the served one may be compacted by now.
      const from = (this.last ?? this.served)?.revision ?? 0;
      current = this.client.watch(
        target,
        this.key === undefined,
        from + 1,
        (events) => {
          if (stopped) return;
          if (rewatched) {
            rewatched = false;
            onChange(); // a re-read that failed while etcd was away is made good now
          }
          if (events.length === 0) return;
          backoff = 250; // real changes: the watch works
          onChange();
        },
        (end) => ended(end),
      );
    };
    const ended = (end: WatchEnd) => {
      if (stopped) return;
      current = null;
      this.rewatches++;
      this.log(`etcd watch ${end.reason}: re-reading`, {
        revision: this.revision,
        ...(end.reason === 'compacted' ? { compactRevision: end.compactRevision } : {}),
        ...(end.reason === 'failed' ? { error: end.error.message } : {}),
        ...(end.reason === 'cancelled' ? { message: end.message } : {}),
      });
      // A re-read (the gateway reloads: unchanged, or the newest revision), then a new watch from it.
      retry = setTimeout(() => {
        retry = null;
        if (stopped) return;
        onChange();
        rewatched = true;
        setTimeout(start, 100).unref();
      }, backoff);
      retry.unref();
      backoff = Math.min(backoff * 2, 5000);
    };
    start();
    const check =
      this.checkInterval > 0
        ? setInterval(() => {
            this.stale().then(
              (stale) => {
                if (!stale || stopped) return;
                this.log('etcd holds another configuration than the one served: re-reading', {
                  revision: this.revision,
                });
                onChange();
              },
              () => {}, // etcd down: the watch's own failure reports it
            );
          }, this.checkInterval)
        : null;
    check?.unref();
    return () => {
      stopped = true;
      current?.close();
      if (retry !== null) clearTimeout(retry);
      if (check !== null) clearInterval(check);
    };
  }
}

/**
 * Throws a TypeError unless `prefix` ends in `/`: etcd reads a prefix as bytes, so `/netloom` would also
 * take `/netloom-staging/...` (guarded by a push, listed by a watch).
 */
export function checkPrefix(prefix: string): void {
  if (!prefix.endsWith('/'))
    throw new TypeError(
      `an etcd prefix ends in "/" (got ${JSON.stringify(prefix)}): without it, keys of siblings such as ${JSON.stringify(`${prefix}-other/`)} would be read too`,
    );
}
