/**
 * `netloom-gateway config push`: validates a configuration file and stores it in etcd, in one transaction
 * guarded by compare-and-swap, so two operators cannot overwrite each other: the push names the revision
 * its author last saw (`--expect-revision`, as `/config` shows it; by default the one read when the push
 * starts) and fails with ERR_GATEWAY_CONFIG_CONFLICT if the configuration changed after it.
 *
 * With a key, the whole configuration is that key's value (JSON). With a prefix, `<prefix>base` holds what is
 * not routes or upstreams, `<prefix>routes/<nnnn>-<name>` each route in order, `<prefix>upstreams/<name>`
 * each upstream, and `<prefix>pushed` when and from which file the last push came (the old routes and
 * upstreams go in the same transaction). The guard is every key under the prefix: an edit made in place
 * after the revision named refuses the push as well.
 */
import { readFile } from 'node:fs/promises';
import { loadConfig, parseConfigText } from './config.ts';
import { checkPrefix } from './config-etcd.ts';
import { GatewayError } from './errors.ts';
import { EtcdClient, type EtcdOperation } from './etcd-client.ts';

/** Operations etcd takes in one transaction by default (`--max-txn-ops`). */
const MAX_TXN_OPS = 128;

/** Where to push, and what the author last saw. */
export interface PushOptions {
  endpoints: readonly string[];
  key?: string;
  prefix?: string;
  /** The etcd revision the author's view is at; the push fails if the configuration changed after it. */
  expectRevision?: number;
  /** Plugin modules the configuration's filters need for validation (as for `--check`). */
  plugins?: readonly string[];
}

/** Validates `file` and stores it; resolves with the revision of the write. */
export async function pushConfig(file: string, options: PushOptions): Promise<{ revision: number }> {
  if ((options.key === undefined) === (options.prefix === undefined))
    throw new TypeError('a push takes a key or a prefix');
  if (options.prefix !== undefined) checkPrefix(options.prefix);
  // Every problem is reported before anything is written (ConfigError).
  await loadConfig(file, [...(options.plugins ?? [])]);
  const input = parseConfigText(await readFile(file, 'utf8'), file) as Record<string, unknown>;
  const listed = Array.isArray(input.plugins) ? (input.plugins as unknown[]) : [];
  const relative = listed.filter((p) => typeof p === 'string' && (p.startsWith('./') || p.startsWith('../')));
  if (relative.length > 0)
    throw new GatewayError(
      'ERR_GATEWAY_ETCD',
      `plugins ${relative.join(', ')} are relative to ${file}, but each gateway resolves them where it runs: name packages, absolute paths or URLs`,
    );
  const client = new EtcdClient({ endpoints: options.endpoints });
  // The guard: the key, or every key under the prefix (an edit made in place counts as a change too).
  const guard = options.key ?? options.prefix!;
  const marker = `${options.prefix}pushed`;
  const since = options.expectRevision ?? (await client.range(guard, options.key === undefined)).revision;
  let operations: EtcdOperation[];
  if (options.key !== undefined) {
    operations = [{ op: 'put', key: options.key, value: JSON.stringify(input, null, 2) }];
  } else {
    const prefix = options.prefix!;
    const {
      routes = [],
      upstreams = {},
      ...base
    } = input as { routes?: unknown[]; upstreams?: Record<string, unknown> };
    const puts: EtcdOperation[] = [
      { op: 'put', key: `${prefix}base`, value: JSON.stringify(base) },
      ...routes.map(
        (r, i): EtcdOperation => ({
          op: 'put',
          key: `${prefix}routes/${String(i).padStart(4, '0')}-${String((r as { name?: unknown }).name ?? i)}`,
          value: JSON.stringify(r),
        }),
      ),
      ...Object.entries(upstreams).map(
        ([name, u]): EtcdOperation => ({
          op: 'put',
          key: `${prefix}upstreams/${name}`,
          value: JSON.stringify(u),
        }),
      ),
      { op: 'put', key: marker, value: JSON.stringify({ at: new Date().toISOString(), file }) },
    ];
    // The routes and upstreams of the old configuration that this one has not, deleted in the same
    // transaction (etcd refuses a transaction whose deletes cover keys it also writes).
    const written = new Set(puts.map((p) => p.key));
    const old = (await client.range(prefix, true)).kvs.map((kv) => kv.key);
    const stale = old.filter(
      (k) => !written.has(k) && (k.startsWith(`${prefix}routes/`) || k.startsWith(`${prefix}upstreams/`)),
    );
    operations = [...stale.map((k): EtcdOperation => ({ op: 'delete', key: k })), ...puts];
  }
  if (operations.length > MAX_TXN_OPS)
    throw new GatewayError(
      'ERR_GATEWAY_ETCD',
      `a push by prefix of ${operations.length} keys is more than etcd takes in one transaction (${MAX_TXN_OPS} by default, --max-txn-ops): push by key, or fewer routes and upstreams`,
    );
  const r = await client.putIfUnchangedSince(guard, since, operations, options.key === undefined);
  if (!r.ok)
    throw new GatewayError(
      'ERR_GATEWAY_CONFIG_CONFLICT',
      `the configuration at ${guard} changed at revision ${r.modRevision}, after revision ${since}: read it again and push on top of it`,
    );
  return { revision: r.revision };
}
