/**
 * Service discovery: an upstream's targets found in a registry instead of listed (`upstreams.*.discovery`).
 * A {@link DiscoverySource} runs on the gateway's main thread and reports the whole current target list
 * whenever it changes; the gateway rolls the list out to every loop as a new version (no source reload),
 * and the loops keep the pools and health of targets that stay (the target registry). A target that
 * leaves is drained: no new requests go to it, those in flight finish, its idle connections close.
 *
 * Two sources ship: etcd (services register a key under a prefix with a lease and keep it alive; the key
 * goes when the lease expires) and DNS (A/AAAA or SRV records, re-resolved as their TTL says, as
 * Kubernetes headless services give). Other registries (Consul, Nacos) implement the interface.
 */
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import { z } from 'zod';
import { EtcdClient, type WatchEnd } from './etcd-client.ts';

/** A discovered target. */
export interface DiscoveredTarget {
  /** `host:port` (or `https://host:port`), as in `upstreams.*.targets`. */
  address: string;
  weight: number;
}

/**
 * A registry the gateway asks for an upstream's targets. `start` begins watching and calls `onTargets`
 * with the whole list each time it changes (the first call as soon as it is known); `onError` tells of
 * a failure the source recovers from by itself (the last list stays in force meanwhile). The function it
 * returns stops watching. Main thread.
 */
export interface DiscoverySource {
  readonly description: string;
  start(onTargets: (targets: DiscoveredTarget[]) => void, onError: (err: Error) => void): () => void;
}

/** `upstreams.*.discovery`. */
export const discoverySettings = z.union([
  z
    .object({
      etcd: z
        .object({
          endpoints: z
            .array(z.string().regex(/^https?:\/\/[^/]+\/?$/, 'an endpoint is http(s)://host:port'))
            .min(1),
          /** Services register `<prefix><instance>` = `host:port` or `{"address": "host:port", "weight": 2}`. */
          prefix: z
            .string()
            .min(1)
            .refine((p) => p.endsWith('/'), {
              message:
                'ends in "/" (etcd reads a prefix as bytes: without it, siblings\' keys would be targets too)',
            }),
        })
        .strict(),
    })
    .strict(),
  z
    .object({
      dns: z
        .object({
          name: z.string().min(1),
          /** A/AAAA records (with `port`), or SRV records (ports and weights from the records). */
          type: z.enum(['A', 'AAAA', 'SRV']).default('A'),
          port: z.number().int().min(1).max(65_535).optional(),
          /** Re-resolved at the records' TTL, bounded to these milliseconds (default 1 s to 5 min). */
          minInterval: z.number().int().min(100).default(1000),
          maxInterval: z.number().int().min(100).default(300_000),
          /** The resolver to ask (an IP address, with `:port` if not 53); the system's when absent. */
          server: z
            .string()
            .refine((s) => resolverAddress(s), 'the resolver is an IP address, with :port if not 53')
            .optional(),
        })
        .strict()
        .refine((d) => d.type === 'SRV' || d.port !== undefined, 'A and AAAA records need a port'),
    })
    .strict(),
]);

export type DiscoverySettings = z.infer<typeof discoverySettings>;
type DnsSettings = Extract<DiscoverySettings, { dns: unknown }>['dns'];

/** The source for a configuration's settings. */
export function createDiscovery(settings: DiscoverySettings): DiscoverySource {
  return 'etcd' in settings ? new EtcdDiscovery(settings.etcd) : new DnsDiscovery(settings.dns);
}

function sameTargets(a: readonly DiscoveredTarget[], b: readonly DiscoveredTarget[]): boolean {
  return a.length === b.length && a.every((t, i) => t.address === b[i]!.address && t.weight === b[i]!.weight);
}

const byAddress = (a: DiscoveredTarget, b: DiscoveredTarget) =>
  a.address < b.address ? -1 : a.address > b.address ? 1 : 0;

/** Whether `s` is what `dns.Resolver.setServers` takes: an IP, `ip:port` or `[ipv6]:port`. */
function resolverAddress(s: string): boolean {
  if (isIP(s) !== 0) return true;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(s);
  return m !== null && isIP(m[1] ?? m[2]!) !== 0 && Number(m[3]) >= 1 && Number(m[3]) <= 65_535;
}

/** Whether `address` is a target the configuration would take: `[scheme://]host:port`, port 1-65535. */
export function validTargetAddress(address: string): boolean {
  const m = /^(?:https?:\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/.exec(
    address,
  );
  if (m === null) return false;
  const port = Number(m[2]);
  if (port < 1 || port > 65_535) return false;
  return !m[1]!.startsWith('[') || isIP(m[1]!.slice(1, -1)) === 6;
}

/** A registration's value: `host:port`, or `{ "address": "host:port", "weight": n }`. */
export function parseRegistration(value: string): DiscoveredTarget | null {
  const text = value.trim();
  let address: unknown = text;
  let weight: unknown = 1;
  if (text.startsWith('{')) {
    try {
      const o = JSON.parse(text) as { address?: unknown; weight?: unknown };
      address = o.address;
      weight = o.weight ?? 1;
    } catch {
      return null;
    }
  }
  if (typeof address !== 'string' || !validTargetAddress(address)) return null;
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > 1000) return null;
  return { address, weight };
}

/** Targets registered under an etcd prefix (with leases: a service that stops renewing disappears). */
export class EtcdDiscovery implements DiscoverySource {
  readonly description: string;
  private readonly client: EtcdClient;
  private readonly prefix: string;

  constructor(settings: { endpoints: readonly string[]; prefix: string }) {
    this.client = new EtcdClient({ endpoints: settings.endpoints });
    this.prefix = settings.prefix;
    this.description = `etcd ${settings.endpoints.join(',')} prefix ${settings.prefix}`;
  }

  start(onTargets: (targets: DiscoveredTarget[]) => void, onError: (err: Error) => void): () => void {
    let stopped = false;
    let watch: { close(): void } | null = null;
    let timer: NodeJS.Timeout | null = null;
    let backoff = 250;
    let last: DiscoveredTarget[] | null = null;
    /** Registrations by key, as of `revision`. */
    const current = new Map<string, DiscoveredTarget>();
    const publish = () => {
      const list = [...current.values()].sort(byAddress);
      if (last !== null && sameTargets(last, list)) return;
      last = list;
      onTargets(list);
    };
    const retry = (err: Error) => {
      if (stopped) return;
      onError(err);
      timer = setTimeout(read, backoff);
      timer.unref();
      backoff = Math.min(backoff * 2, 5000);
    };
    // A full read, then a watch from its revision: a watch that breaks (or would start compacted) reads again.
    const read = () => {
      timer = null;
      this.client.range(this.prefix, true).then(
        ({ revision, kvs }) => {
          if (stopped) return;
          current.clear();
          for (const kv of kvs) {
            const t = parseRegistration(kv.value);
            if (t === null)
              onError(new Error(`registration ${kv.key} is not host:port or {address, weight}`));
            else current.set(kv.key, t);
          }
          publish();
          backoff = 250;
          watch = this.client.watch(
            this.prefix,
            true,
            revision + 1,
            (events) => {
              for (const e of events) {
                if (e.type === 'delete') current.delete(e.kv.key);
                else {
                  const t = parseRegistration(e.kv.value);
                  if (t === null) {
                    current.delete(e.kv.key);
                    onError(new Error(`registration ${e.kv.key} is not host:port or {address, weight}`));
                  } else current.set(e.kv.key, t);
                }
              }
              if (events.length > 0) publish();
            },
            (end: WatchEnd) => {
              watch = null;
              retry(new Error(`the discovery watch ended (${end.reason}): reading ${this.prefix} again`));
            },
          );
        },
        (err: Error) => retry(err),
      );
    };
    read();
    return () => {
      stopped = true;
      watch?.close();
      if (timer !== null) clearTimeout(timer);
    };
  }
}

/** Targets from DNS: A/AAAA records with a port, or SRV records; re-resolved at the records' TTL. */
export class DnsDiscovery implements DiscoverySource {
  readonly description: string;
  private readonly settings: DnsSettings;
  private readonly resolver: dns.Resolver;

  constructor(settings: DnsSettings) {
    this.settings = settings;
    this.resolver = new dns.Resolver({ timeout: 2000, tries: 2 });
    if (settings.server !== undefined) this.resolver.setServers([settings.server]);
    this.description = `dns ${settings.type} ${settings.name}`;
  }

  /** The records now, and the seconds they may be kept. */
  private async resolve(): Promise<{ targets: DiscoveredTarget[]; ttl: number }> {
    const s = this.settings;
    const host = (h: string) => (isIP(h) === 6 ? `[${h}]` : h);
    if (s.type === 'SRV') {
      const records = await this.resolver.resolveSrv(s.name);
      // SRV has no TTL in node's answer: the minimum interval applies.
      return {
        targets: records.map((r) => ({
          address: `${host(r.name)}:${r.port}`,
          weight: Math.max(1, Math.min(1000, r.weight || 1)),
        })),
        ttl: s.minInterval / 1000,
      };
    }
    const records =
      s.type === 'A'
        ? await this.resolver.resolve4(s.name, { ttl: true })
        : await this.resolver.resolve6(s.name, { ttl: true });
    return {
      targets: records.map((r) => ({ address: `${host(r.address)}:${s.port}`, weight: 1 })),
      ttl: Math.min(...records.map((r) => r.ttl)),
    };
  }

  start(onTargets: (targets: DiscoveredTarget[]) => void, onError: (err: Error) => void): () => void {
    let stopped = false;
    let timer: NodeJS.Timeout | null = null;
    let last: DiscoveredTarget[] | null = null;
    const s = this.settings;
    const next = (ms: number) => {
      if (stopped) return;
      timer = setTimeout(tick, Math.max(s.minInterval, Math.min(s.maxInterval, ms)));
      timer.unref();
    };
    const tick = () => {
      this.resolve().then(
        ({ targets, ttl }) => {
          if (stopped) return;
          const valid = targets.filter((t) => validTargetAddress(t.address));
          if (valid.length < targets.length)
            onError(new Error(`records of ${s.name} that are not host:port were skipped`));
          const list = [...new Map(valid.map((t) => [t.address, t])).values()].sort(byAddress);
          if (last === null || !sameTargets(last, list)) {
            last = list;
            onTargets(list);
          }
          next((Number.isFinite(ttl) ? ttl : 0) * 1000);
        },
        (err: Error) => {
          if (stopped) return;
          // NXDOMAIN or a resolver down: the last list stays; asked again soon.
          onError(err);
          next(s.minInterval);
        },
      );
    };
    tick();
    return () => {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
      this.resolver.cancel(); // a query in flight must not keep the process
    };
  }
}
