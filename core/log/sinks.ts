import { type FileHandle, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { basename, dirname, join } from 'node:path';

/** How a batch's bytes are encoded. */
export type Compression = 'none' | 'gzip' | 'deflate' | 'zstd';

/** A batch of NDJSON records, encoded. */
export interface LogBatch {
  /** The bytes to ship (compressed when `encoding` says so). */
  data: Buffer;
  encoding: Compression;
  /** Records in the batch. */
  records: number;
  /** NDJSON bytes before compression. */
  rawBytes: number;
}

/**
 * Where batches go. Runs in the shipper's worker thread. `write` resolves once the batch is stored or
 * acknowledged and rejects when it is given up on (the shipper then counts its records as dropped); it must
 * not buffer without limit.
 */
export interface LogSink {
  write(batch: LogBatch): Promise<void>;
  /** Flushes and releases resources; called once at shutdown. */
  close(): Promise<void>;
  /** Reopens what it writes to (a file logrotate moved away); optional. */
  reopen?(): Promise<void>;
}

/** How often a file sink looks whether its path still names the file it writes. */
const MOVE_CHECK_MS = 1000;

/** Sink settings (plain data: they travel to the shipper's thread). */
export type SinkConfig =
  | {
      type: 'file';
      /** File to append to; rotated files sit beside it as `<name>.<UTC timestamp>-<n>`. */
      path: string;
      /** Rotate once the file would pass this many bytes (default 64 MiB). */
      maxBytes?: number;
      /** Rotate once the file is this many milliseconds old (default: never). */
      interval?: number;
      /** Rotated files kept (default 10); older ones are deleted. */
      keep?: number;
    }
  | { type: 'stdout' }
  | {
      type: 'tcp';
      host: string;
      port: number;
      /** Milliseconds before a write counts as failed (default 5000). */
      timeout?: number;
    }
  | {
      type: 'http';
      /** Endpoint that takes NDJSON batches by POST. */
      url: string;
      headers?: Record<string, string>;
      /** Attempts per batch after the first (default 3). */
      retries?: number;
      /** First backoff in milliseconds, doubled per attempt, capped at 5 s (default 100). */
      backoff?: number;
      /** Milliseconds per attempt (default 5000). */
      timeout?: number;
    }
  | {
      type: 'module';
      /** Module specifier (URL or absolute path) whose default export is `(options) => LogSink`. */
      module: string;
      options?: unknown;
    };

/** Builds the sink a config describes (in the shipper's thread). */
export async function createSink(config: SinkConfig): Promise<LogSink> {
  switch (config.type) {
    case 'file':
      return FileSink.open(
        config.path,
        config.maxBytes ?? 64 * 1024 * 1024,
        config.interval ?? 0,
        config.keep ?? 10,
      );
    case 'stdout':
      return {
        write: (batch) =>
          new Promise((resolve, reject) =>
            process.stdout.write(batch.data, (err) => (err ? reject(err) : resolve())),
          ),
        close: async () => {},
      };
    case 'tcp':
      return new TcpSink(config.host, config.port, config.timeout ?? 5000);
    case 'http':
      return new HttpSink(
        config.url,
        config.headers ?? {},
        config.retries ?? 3,
        config.backoff ?? 100,
        config.timeout ?? 5000,
      );
    case 'module': {
      const mod = (await import(config.module)) as {
        default?: (options: unknown) => LogSink | Promise<LogSink>;
      };
      if (typeof mod.default !== 'function')
        throw new Error(`log sink module ${config.module} has no default factory`);
      return mod.default(config.options);
    }
  }
}

/** Appends batches to a file, rotating by size and age and keeping `keep` rotated files. */
export class FileSink implements LogSink {
  /** Null after a failed open or rotation: the next write opens the path again. */
  private handle: FileHandle | null;
  private size: number;
  private inode: number;
  private openedAt: number;
  /** When the path was last checked for a move (logrotate without a signal). */
  private checkedAt: number;
  private seq = 0;
  private chain: Promise<void> = Promise.resolve();
  readonly path: string;
  private readonly maxBytes: number;
  private readonly interval: number;
  private readonly keep: number;

  private constructor(
    path: string,
    handle: FileHandle,
    size: number,
    inode: number,
    maxBytes: number,
    interval: number,
    keep: number,
  ) {
    this.path = path;
    this.handle = handle;
    this.size = size;
    this.inode = inode;
    this.openedAt = this.checkedAt = Date.now();
    this.maxBytes = maxBytes;
    this.interval = interval;
    this.keep = keep;
  }

  static async open(path: string, maxBytes: number, interval: number, keep: number): Promise<FileSink> {
    await mkdir(dirname(path), { recursive: true });
    const handle = await open(path, 'a');
    const { size, ino } = await handle.stat();
    return new FileSink(path, handle, size, ino, maxBytes, interval, keep);
  }

  write(batch: LogBatch): Promise<void> {
    // Writes are serialized: batches land in the order they were made.
    const next = this.chain.then(() => this.append(batch.data));
    this.chain = next.catch(() => {});
    return next;
  }

  /**
   * Opens the path again (logrotate's move-then-signal: call it from the signal handler, through
   * `LogShipper.reopen()`). A moved file is also noticed within a second without the signal.
   */
  reopen(): Promise<void> {
    const next = this.chain.then(() => this.openPath());
    this.chain = next.catch(() => {});
    return next;
  }

  private async openPath(): Promise<void> {
    const old = this.handle;
    this.handle = null;
    await old?.close().catch(() => {});
    const handle = await open(this.path, 'a');
    const { size, ino } = await handle.stat();
    this.handle = handle;
    this.size = size;
    this.inode = ino;
    this.openedAt = this.checkedAt = Date.now();
  }

  private async append(data: Buffer): Promise<void> {
    if (this.handle === null) await this.openPath();
    else if (Date.now() - this.checkedAt >= MOVE_CHECK_MS) await this.followMove();
    const due =
      this.size > 0 &&
      (this.size + data.length > this.maxBytes ||
        (this.interval > 0 && Date.now() - this.openedAt >= this.interval));
    if (due) await this.rotate();
    await this.handle!.write(data);
    this.size += data.length;
  }

  /** Reopens when the path no longer names the file we hold (moved or deleted by someone else). */
  private async followMove(): Promise<void> {
    this.checkedAt = Date.now();
    try {
      if ((await stat(this.path)).ino === this.inode) return;
    } catch {
      // gone: open a new one
    }
    await this.openPath();
  }

  private async rotate(): Promise<void> {
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('.', '');
    const old = this.handle;
    this.handle = null;
    await old?.close().catch(() => {});
    try {
      await rename(this.path, `${this.path}.${stamp}-${String(this.seq++).padStart(4, '0')}`);
    } catch (err) {
      // Someone moved it first, or the directory refuses: write on at the path rather than fail for good.
      process.stderr.write(
        `netloom log: rotating ${this.path} failed (${(err as Error).message}); reopening\n`,
      );
    }
    await this.openPath();
    await this.prune().catch(() => {});
  }

  /** Deletes rotated files beyond `keep`, oldest first (their names sort by time). */
  private async prune(): Promise<void> {
    const name = basename(this.path);
    const dir = dirname(this.path);
    const rotated = (await readdir(dir))
      .filter((f) => f.startsWith(`${name}.`) && /\.\d{8}T\d{9}Z-\d{4}$/.test(f))
      .sort();
    for (const old of rotated.slice(0, Math.max(0, rotated.length - this.keep)))
      await unlink(join(dir, old)).catch(() => {});
  }

  async close(): Promise<void> {
    await this.chain;
    await this.handle?.close();
    this.handle = null;
  }

  /** Rotated files present now, oldest first (for tests and tools). */
  static async rotated(path: string): Promise<string[]> {
    const name = basename(path);
    const files = (await readdir(dirname(path))).filter((f) => f.startsWith(`${name}.`)).sort();
    return Promise.all(
      files.map(async (f) => ((await stat(join(dirname(path), f))).isFile() ? join(dirname(path), f) : '')),
    ).then((l) => l.filter(Boolean));
  }
}

/**
 * Streams batches over one TCP connection, reconnecting with bounded backoff. While it is down, batches
 * fail at once (the shipper counts them as dropped): nothing piles up.
 */
export class TcpSink implements LogSink {
  private socket: net.Socket | null = null;
  private connecting: Promise<net.Socket> | null = null;
  private backoff = 100;
  private nextAttempt = 0;
  private readonly host: string;
  private readonly port: number;
  private readonly timeout: number;

  constructor(host: string, port: number, timeout: number) {
    this.host = host;
    this.port = port;
    this.timeout = timeout;
  }

  private connect(): Promise<net.Socket> {
    if (this.socket !== null && !this.socket.destroyed) return Promise.resolve(this.socket);
    if (this.connecting !== null) return this.connecting;
    if (Date.now() < this.nextAttempt) return Promise.reject(new Error('tcp sink down (backing off)'));
    this.connecting = new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(this.port, this.host);
      s.setTimeout(this.timeout, () => s.destroy(new Error('tcp sink timeout')));
      s.once('connect', () => {
        // The timeout guarded the connect only: an idle sink connection is fine (writes have their own timer).
        s.setTimeout(0);
        this.backoff = 100;
        this.socket = s;
        resolve(s);
      });
      s.once('error', (err) => {
        this.nextAttempt = Date.now() + this.backoff;
        this.backoff = Math.min(this.backoff * 2, 5000);
        reject(err);
      });
      s.on('close', () => {
        if (this.socket === s) this.socket = null;
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  async write(batch: LogBatch): Promise<void> {
    const s = await this.connect();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        s.destroy(new Error('tcp sink write timeout'));
        reject(new Error('tcp sink write timeout'));
      }, this.timeout);
      s.write(batch.data, (err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      });
    });
  }

  async close(): Promise<void> {
    const s = this.socket;
    if (s === null) return;
    await new Promise<void>((resolve) => s.end(resolve));
  }
}

/** POSTs each batch as NDJSON (with Content-Encoding when compressed), retrying with bounded backoff. */
export class HttpSink implements LogSink {
  private readonly url: URL;
  private readonly headers: Record<string, string>;
  private readonly retries: number;
  private readonly backoff: number;
  private readonly timeout: number;
  private readonly agent: http.Agent;

  constructor(
    url: string,
    headers: Record<string, string>,
    retries: number,
    backoff: number,
    timeout: number,
  ) {
    this.url = new URL(url);
    this.headers = headers;
    this.retries = retries;
    this.backoff = backoff;
    this.timeout = timeout;
    this.agent = new (this.url.protocol === 'https:' ? https.Agent : http.Agent)({
      keepAlive: true,
      maxSockets: 4,
    });
  }

  async write(batch: LogBatch): Promise<void> {
    let delay = this.backoff;
    for (let attempt = 0; ; attempt++) {
      const status = await this.post(batch).catch(() => 0);
      if (status >= 200 && status < 300) return;
      if ((status >= 400 && status < 500 && status !== 429) || attempt >= this.retries) {
        throw new Error(`http sink: batch refused (status ${status || 'network error'})`);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }

  private post(batch: LogBatch): Promise<number> {
    const client = this.url.protocol === 'https:' ? https : http;
    const headers: Record<string, string | number> = {
      'content-type': 'application/x-ndjson',
      'content-length': batch.data.length,
      'x-log-records': batch.records,
      ...this.headers,
    };
    if (batch.encoding !== 'none') headers['content-encoding'] = batch.encoding;
    return new Promise((resolve, reject) => {
      const req = client.request(
        this.url,
        { method: 'POST', headers, agent: this.agent, timeout: this.timeout },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('http sink timeout')));
      req.on('error', reject);
      req.end(batch.data);
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}
