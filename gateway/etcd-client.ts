/**
 * A small etcd v3 client over etcd's JSON gateway (`/v3/...`, HTTP/1.1, keys and values base64): range,
 * put, compare-and-swap transactions, leases, and watches as a stream of events.
 *
 * Why not the `etcd3` package: it speaks gRPC through `@grpc/grpc-js` and `@grpc/proto-loader` (two
 * dependencies more on the gateway's main thread), and its watcher reconnects on its own terms. The
 * gateway's promise is never to serve stale configuration silently, which is decided exactly where a
 * watch breaks, is cancelled or starts from a compacted revision: this client reports each of those to
 * its caller (`WatchEnd`) and never resumes by itself. The JSON gateway ships with every etcd v3.4+.
 */
import http from 'node:http';
import https from 'node:https';
import { GatewayError } from './errors.ts';

/** One key's value as etcd holds it. */
export interface EtcdKeyValue {
  key: string;
  value: string;
  /** The revision that last changed the key. */
  modRevision: number;
  createRevision: number;
  /** The lease the key is attached to ('0': none; an int64, kept as text). */
  lease: string;
}

/** A watch event: a put (with the new value) or a delete. */
export interface EtcdEvent {
  type: 'put' | 'delete';
  kv: EtcdKeyValue;
}

/** Why a watch ended: the caller re-reads and watches again (from the revision it then serves). */
export type WatchEnd =
  | { reason: 'compacted'; compactRevision: number }
  | { reason: 'cancelled'; message: string }
  | { reason: 'failed'; error: Error };

/** One write of a transaction. */
export type EtcdOperation =
  | { op: 'put'; key: string; value: string }
  | { op: 'delete'; key: string; prefix?: boolean };

/** A watch in progress. */
export interface EtcdWatch {
  /** Stops it (no `onEnd` follows). */
  close(): void;
}

interface RawKv {
  key?: string;
  value?: string;
  mod_revision?: string;
  create_revision?: string;
  lease?: string;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined) => (s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8'));

/** The first key after every key that starts with `prefix` (etcd's `range_end` for a prefix). */
export function prefixEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8');
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i]!++;
      return end.toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64'); // every key
}

function kvOf(raw: RawKv): EtcdKeyValue {
  return {
    key: unb64(raw.key),
    value: unb64(raw.value),
    modRevision: Number(raw.mod_revision ?? 0),
    createRevision: Number(raw.create_revision ?? 0),
    lease: raw.lease ?? '0',
  };
}

/** Settings of an {@link EtcdClient}. */
export interface EtcdClientOptions {
  /** Client URLs of the cluster (`http://127.0.0.1:2379`); tried in turn when one fails. */
  endpoints: readonly string[];
  /** Milliseconds a unary call may take (default 2000). */
  timeout?: number;
  /** Sent as `Authorization` (an etcd auth token), when set. */
  token?: string;
}

/** A client for one etcd cluster. Main thread (any thread with an event loop); calls may overlap. */
export class EtcdClient {
  readonly endpoints: readonly string[];
  private readonly timeout: number;
  private readonly token: string | undefined;
  /** The endpoint that answered last (the next call starts there). */
  private current = 0;

  constructor(options: EtcdClientOptions) {
    if (options.endpoints.length === 0) throw new TypeError('etcd needs at least one endpoint');
    for (const e of options.endpoints)
      if (!/^https?:\/\/[^/]+\/?$/.test(e))
        throw new TypeError(`etcd endpoint ${JSON.stringify(e)} is not http(s)://host:port`);
    this.endpoints = options.endpoints.map((e) => e.replace(/\/$/, ''));
    this.timeout = options.timeout ?? 2000;
    this.token = options.token;
  }

  /** POSTs `body` to `path` on an endpoint that answers; rejects with ERR_GATEWAY_ETCD after trying all. */
  async call<T>(path: string, body: unknown): Promise<T> {
    let last: Error | null = null;
    for (let k = 0; k < this.endpoints.length; k++) {
      const at = (this.current + k) % this.endpoints.length;
      try {
        const answer = await this.post<T>(this.endpoints[at]!, path, body);
        this.current = at;
        return answer;
      } catch (err) {
        last = err as Error;
        if ((err as { etcdAnswered?: boolean }).etcdAnswered) break; // etcd refused it: another member would too
      }
    }
    throw new GatewayError('ERR_GATEWAY_ETCD', `etcd ${path}: ${last?.message ?? 'no endpoint'}`, {
      cause: last,
    });
  }

  private post<T>(endpoint: string, path: string, body: unknown): Promise<T> {
    const payload = JSON.stringify(body);
    const url = new URL(path, `${endpoint}/`);
    const lib = url.protocol === 'https:' ? https : http;
    return new Promise<T>((resolve, reject) => {
      const req = lib.request(
        url,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
            ...(this.token === undefined ? {} : { authorization: this.token }),
          },
          timeout: this.timeout,
          agent: false,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            text += d;
          });
          res.on('end', () => {
            let json: { error?: string; message?: string } & Record<string, unknown>;
            try {
              json = JSON.parse(text);
            } catch {
              reject(new Error(`answered ${res.statusCode} with no JSON`));
              return;
            }
            if (res.statusCode !== 200 || json.error !== undefined) {
              reject(
                Object.assign(new Error(json.message ?? json.error ?? `HTTP ${res.statusCode}`), {
                  etcdAnswered: true,
                }),
              );
              return;
            }
            resolve(json as T);
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeout} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Keys equal to `key`, or starting with it with `prefix`; and the store's revision. */
  async range(key: string, prefix = false): Promise<{ revision: number; kvs: EtcdKeyValue[] }> {
    const r = await this.call<{ header: { revision: string }; kvs?: RawKv[] }>('/v3/kv/range', {
      key: b64(key),
      ...(prefix ? { range_end: prefixEnd(key) } : {}),
    });
    return { revision: Number(r.header.revision), kvs: (r.kvs ?? []).map(kvOf) };
  }

  /** Writes `key` (attached to `lease`, an id from {@link grantLease}); returns the revision of the write. */
  async put(key: string, value: string, lease?: string): Promise<number> {
    const r = await this.call<{ header: { revision: string } }>('/v3/kv/put', {
      key: b64(key),
      value: b64(value),
      ...(lease === undefined ? {} : { lease }),
    });
    return Number(r.header.revision);
  }

  /** Deletes `key` (or every key under it with `prefix`). */
  async delete(key: string, prefix = false): Promise<number> {
    const r = await this.call<{ header: { revision: string } }>('/v3/kv/deleterange', {
      key: b64(key),
      ...(prefix ? { range_end: prefixEnd(key) } : {}),
    });
    return Number(r.header.revision);
  }

  /**
   * Runs `operations` in one transaction if `guard` has not changed after revision `since` (its last
   * change is at or before it; a missing key passes): `{ ok: false, modRevision }` says when it last
   * changed when someone else wrote first.
   */
  async putIfUnchangedSince(
    guard: string,
    since: number,
    operations: readonly EtcdOperation[],
    guardIsPrefix = false,
  ): Promise<{ ok: true; revision: number } | { ok: false; modRevision: number }> {
    const r = await this.call<{
      header: { revision: string };
      succeeded?: boolean;
      responses?: { response_range?: { kvs?: RawKv[] } }[];
    }>('/v3/kv/txn', {
      // With a prefix: no key under it changed after `since` (etcd compares every key of the range).
      compare: [
        {
          key: b64(guard),
          ...(guardIsPrefix ? { range_end: prefixEnd(guard) } : {}),
          target: 'MOD',
          result: 'LESS',
          mod_revision: String(since + 1),
        },
      ],
      success: operations.map((o) =>
        o.op === 'put'
          ? { request_put: { key: b64(o.key), value: b64(o.value) } }
          : {
              request_delete_range: {
                key: b64(o.key),
                ...(o.prefix === true ? { range_end: prefixEnd(o.key) } : {}),
              },
            },
      ),
      failure: [
        { request_range: { key: b64(guard), ...(guardIsPrefix ? { range_end: prefixEnd(guard) } : {}) } },
      ],
    });
    if (r.succeeded === true) return { ok: true, revision: Number(r.header.revision) };
    let newest = 0;
    for (const kv of r.responses?.[0]?.response_range?.kvs ?? [])
      newest = Math.max(newest, Number(kv.mod_revision ?? 0));
    return { ok: false, modRevision: newest };
  }

  /** Grants a lease of `ttl` seconds; returns its id (an int64, as text: it may not fit a double). */
  async grantLease(ttl: number): Promise<string> {
    const r = await this.call<{ ID: string }>('/v3/lease/grant', { TTL: String(ttl) });
    return r.ID;
  }

  /** Renews a lease; false when it has expired (its keys are gone). */
  async keepAlive(lease: string): Promise<boolean> {
    const r = await this.call<{ result?: { TTL?: string } }>('/v3/lease/keepalive', { ID: lease });
    return Number(r.result?.TTL ?? 0) > 0;
  }

  async revokeLease(lease: string): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: lease });
  }

  /** Compacts the history up to `revision` (tests and operators). */
  async compact(revision: number): Promise<void> {
    await this.call('/v3/kv/compaction', { revision: String(revision), physical: true });
  }

  /**
   * Watches `key` (a prefix with `prefix`) from `startRevision`: `onEvents` gets each batch with the
   * revision it brings the watcher to (and an empty one once the watch is created); `onEnd` once, when the
   * watch cannot go on (the caller decides what to re-read). A quiet stream is not a dead one (etcd sends
   * progress every 10 minutes): while it is up, the watch's endpoint is asked a cheap range every
   * `probeMs` (default 10 s), and a watch etcd does not answer within the call timeout, or whose probe
   * fails, ends as failed.
   */
  watch(
    key: string,
    prefix: boolean,
    startRevision: number,
    onEvents: (events: EtcdEvent[], revision: number) => void,
    onEnd: (end: WatchEnd) => void,
    probeMs = 10_000,
  ): EtcdWatch {
    const endpoint = this.endpoints[this.current]!;
    const url = new URL('/v3/watch', `${endpoint}/`);
    const lib = url.protocol === 'https:' ? https : http;
    let closed = false;
    let probe: NodeJS.Timeout | null = null;
    // Until etcd answers the watch request at all (the stream's head): a member that never does is dead.
    let answer: NodeJS.Timeout | null = setTimeout(
      () => end({ reason: 'failed', error: new Error(`the watch had no answer within ${this.timeout} ms`) }),
      this.timeout,
    );
    answer.unref();
    const stopTimers = () => {
      if (answer !== null) clearTimeout(answer);
      if (probe !== null) clearInterval(probe);
      answer = probe = null;
    };
    const end = (e: WatchEnd) => {
      if (closed) return;
      closed = true;
      stopTimers();
      req.destroy();
      onEnd(e);
    };
    const payload = JSON.stringify({
      create_request: {
        key: b64(key),
        ...(prefix ? { range_end: prefixEnd(key) } : {}),
        start_revision: String(startRevision),
        progress_notify: true,
      },
    });
    const req = lib.request(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(this.token === undefined ? {} : { authorization: this.token }),
      },
      agent: false,
    });
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        end({ reason: 'failed', error: new Error(`the watch was answered ${res.statusCode}`) });
        return;
      }
      if (answer !== null) clearTimeout(answer);
      answer = null;
      probe = setInterval(() => {
        this.post(endpoint, '/v3/kv/range', { key: b64(key), count_only: true }).catch((error: Error) =>
          end({ reason: 'failed', error: new Error(`etcd stopped answering: ${error.message}`) }),
        );
      }, probeMs);
      probe.unref();
      res.setEncoding('utf8');
      let buffered = '';
      res.on('data', (d: string) => {
        buffered += d;
        for (let nl = buffered.indexOf('\n'); nl !== -1; nl = buffered.indexOf('\n')) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line !== '') this.watchLine(line, onEvents, end);
          if (closed) return;
        }
      });
      res.on('end', () => end({ reason: 'failed', error: new Error('etcd ended the watch stream') }));
      res.on('error', (error) => end({ reason: 'failed', error }));
    });
    req.on('error', (error) => end({ reason: 'failed', error }));
    req.end(payload);
    return {
      close: () => {
        closed = true;
        stopTimers();
        req.destroy();
      },
    };
  }

  private watchLine(
    line: string,
    onEvents: (events: EtcdEvent[], revision: number) => void,
    end: (e: WatchEnd) => void,
  ): void {
    let msg: {
      result?: {
        header?: { revision?: string };
        events?: { type?: string; kv?: RawKv }[];
        canceled?: boolean;
        compact_revision?: string;
        cancel_reason?: string;
      };
      error?: { message?: string };
    };
    try {
      msg = JSON.parse(line);
    } catch {
      end({ reason: 'failed', error: new Error('etcd sent a watch line that is not JSON') });
      return;
    }
    if (msg.error !== undefined) {
      end({ reason: 'failed', error: new Error(msg.error.message ?? 'watch error') });
      return;
    }
    const r = msg.result;
    if (r === undefined) return;
    if (r.compact_revision !== undefined && Number(r.compact_revision) > 0) {
      end({ reason: 'compacted', compactRevision: Number(r.compact_revision) });
      return;
    }
    if (r.canceled === true) {
      end({ reason: 'cancelled', message: r.cancel_reason ?? 'cancelled by etcd' });
      return;
    }
    const events = (r.events ?? []).map(
      (e): EtcdEvent => ({ type: e.type === 'DELETE' ? 'delete' : 'put', kv: kvOf(e.kv ?? {}) }),
    );
    const revision = Number(r.header?.revision ?? 0);
    if (events.length > 0 || revision > 0) onEvents(events, revision);
  }
}
