import { constants, createHash } from 'node:crypto';
import { type FSWatcher, statSync, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import tls from 'node:tls';
import { type NetloomError, netloomError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { CertificatePair, CertificateSource, LoadedCertificate, Pem, ResolvedTls } from './options.ts';

const HOST = /^([a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}$/;
/** How often watched directories are checked for having been replaced (their watcher would be deaf). */
const RECHECK_MS = 2000;
/** A name whose certificate failed to load is asked for again after this long. */
const FAILED_RETRY_MS = 5000;
/** Changes to watched files are applied this long after the last event (a cert and its key land apart). */
const SETTLE_MS = 100;

/** The PEM bytes of a pair, read from files where it names them. */
async function readPair(pair: CertificatePair): Promise<LoadedCertificate> {
  const cert = pair.certFile !== undefined ? await readFile(pair.certFile) : pair.cert!;
  const key = pair.keyFile !== undefined ? await readFile(pair.keyFile) : pair.key!;
  return { cert, key, passphrase: pair.passphrase };
}

function pemBuffer(pem: Pem): Buffer | string {
  return typeof pem === 'string' ? pem : Buffer.from(pem.buffer, pem.byteOffset, pem.byteLength);
}

/** Why a context could not be made, in words (OpenSSL's reason, without its stack). */
function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOENT') return `no such file ${e.path ?? ''}`.trim();
  return e?.message ?? String(err);
}

/**
 * A loop's certificates: the default one, the named ones, and the contexts made for server names on demand
 * (from the directory or the source), in an LRU. Rotation: files are watched (their directories, so a file
 * replaced by a rename is seen too); a change re-reads the pair and swaps the context if it loads, or logs and
 * keeps the previous one. Loop thread only.
 */
export class CertificateStore {
  private readonly tls: ResolvedTls;
  private readonly log: Logger;
  private readonly source: CertificateSource | null;
  /** Called after the default certificate changed (the acceptor rebuilds its session contexts). */
  onDefaultChange: (() => void) | null = null;
  private defaultPair: CertificatePair | null;
  private defaultCtx: tls.SecureContext | null = null;
  /** The default pair's PEM, read (session contexts are made from it synchronously). */
  private defaultLoaded: LoadedCertificate | null = null;
  /** Named certificates given in the options: exact and `*.` names. */
  private readonly named = new Map<string, tls.SecureContext>();
  /** Contexts loaded on demand, keyed by certificate name (`a.example.com`, `*.example.com`), LRU order. */
  private readonly cache = new Map<string, tls.SecureContext>();
  /** Names known to have no certificate (bounded like the cache). */
  private readonly missing = new Map<string, true>();
  private readonly loading = new Map<string, Promise<tls.SecureContext | null>>();
  /** Bumped by `reload`: loads begun before it do not record what they found. */
  private generation = 0;
  /** Names whose load failed (not "no such certificate"), with when to try again. */
  private readonly failed = new Map<string, number>();
  /** Watched directories, their watcher (null while it cannot be watched) and identity (see dirIdentity). */
  private readonly watchers = new Map<string, { watcher: FSWatcher | null; ino: string }>();
  private recheck: NodeJS.Timeout | null = null;
  private stopSource: (() => void) | null = null;
  private readonly due = new Set<string>();
  private dueTimer: NodeJS.Timeout | null = null;
  /** Watched file path -> what to reload when it changes ('default', or `named:<name>`). */
  private readonly fileOwners = new Map<string, string>();
  /** Watched directory -> what its files feed (a symlink swap there names none of the files). */
  private readonly dirOwners = new Map<string, Set<string>>();
  /** What each certificate in force was made from (a hash of its PEM), by refresh key. */
  private readonly fingerprints = new Map<string, string>();

  constructor(options: ResolvedTls, log: Logger, source: CertificateSource | null) {
    this.tls = options;
    this.log = log;
    this.source = source;
    this.defaultPair = options.cert !== undefined || options.certFile !== undefined ? options : null;
  }

  /** Loads the default and named certificates (a bad one fails the start) and starts watching. */
  async init(): Promise<void> {
    if (this.defaultPair !== null) {
      await this.loadDefault();
      this.fingerprints.set('default', fingerprint(this.defaultLoaded!));
    }
    await this.clientCa();
    for (const [name, pair] of Object.entries(this.tls.certificates)) {
      const what = `tls.certificates["${name}"]`;
      const loaded = await this.readOwned(pair, what);
      this.named.set(name, await this.contextOf(loaded, what));
      this.fingerprints.set(`named:${name}`, fingerprint(loaded));
    }
    this.watchFiles();
    if (this.source?.watch !== undefined) {
      this.stopSource = this.source.watch((name) => this.forget(name.toLowerCase()));
    }
  }

  /** The context for handshakes without a name, or with an unknown one (null: there is none). */
  get defaultContext(): tls.SecureContext | null {
    return this.defaultCtx;
  }

  private async loadDefault(): Promise<void> {
    let loaded: LoadedCertificate;
    try {
      loaded = await readPair(this.defaultPair!);
    } catch (err) {
      throw tlsError(`tls: the default certificate does not load (${reason(err)})`, err);
    }
    this.defaultCtx = await this.contextOf(loaded, 'tls');
    this.defaultLoaded = loaded;
  }

  /**
   * A new context with the default certificate (or none) for a handshake to start on: the acceptor keeps one
   * per ticket key, since OpenSSL seals and opens tickets with the context a handshake started on, whatever
   * context SNI switches it to.
   */
  sessionContext(): tls.SecureContext {
    const d = this.defaultLoaded;
    return tls.createSecureContext({
      ...this.baseOptions(),
      ...(this.caCache ?? {}),
      ...(d === null ? {} : { cert: pemBuffer(d.cert), key: pemBuffer(d.key), passphrase: d.passphrase }),
    });
  }

  /** Options every context shares (protocol versions, ciphers, client-certificate CAs). */
  baseOptions(): tls.SecureContextOptions {
    const t = this.tls;
    return {
      minVersion: t.minVersion,
      maxVersion: t.maxVersion,
      ciphers: t.ciphers,
      ecdhCurve: t.ecdhCurve,
      secureOptions: t.sessionTickets ? 0 : constants.SSL_OP_NO_TICKET,
    };
  }

  /** Makes a context for `pair`; throws `ERR_NETLOOM_TLS` naming `what` when it does not load. */
  async contextOf(pair: CertificatePair | LoadedCertificate, what: string): Promise<tls.SecureContext> {
    try {
      const loaded = await readPair(pair);
      return tls.createSecureContext({
        ...this.baseOptions(),
        ...(await this.clientCa()),
        cert: pemBuffer(loaded.cert),
        key: pemBuffer(loaded.key),
        passphrase: loaded.passphrase,
      });
    } catch (err) {
      throw tlsError(`${what}: the certificate does not load (${reason(err)})`, err);
    }
  }

  private caCache: { ca: Buffer | string } | null = null;
  /** The client-certificate CAs every context verifies against (mutual TLS), read once. */
  async clientCa(): Promise<{ ca?: Buffer | string }> {
    const cc = this.tls.clientCertificates;
    if (cc === undefined) return {};
    if (this.caCache === null) {
      try {
        this.caCache = { ca: cc.caFile !== undefined ? await readFile(cc.caFile) : pemBuffer(cc.ca!) };
      } catch (err) {
        throw tlsError(`tls.clientCertificates: the CA does not load (${reason(err)})`, err);
      }
    }
    return this.caCache;
  }

  /**
   * The context for `servername` (lowercased): sync when known, a promise when it must be loaded; null
   * when no certificate names it (the caller falls back to the default, or refuses).
   */
  lookup(servername: string): tls.SecureContext | null | Promise<tls.SecureContext | null> {
    // Only plausible host names: labels of letters, digits, '-' and '_' (a name becomes a file name below).
    if (servername.length > 253 || !HOST.test(servername)) return null;
    const exact = this.named.get(servername);
    if (exact !== undefined) return exact;
    const dot = servername.indexOf('.');
    const wildcard = dot > 0 ? `*${servername.slice(dot)}` : '';
    if (wildcard !== '') {
      const w = this.named.get(wildcard);
      if (w !== undefined) return w;
    }
    if (this.tls.certificateDirectory === undefined && this.source === null) return null;
    const hit = this.cached(servername);
    if (hit !== undefined) {
      if (hit !== null || wildcard === '') return hit;
      const w = this.cached(wildcard);
      if (w !== undefined) return w;
      return this.load(wildcard);
    }
    return this.load(servername).then((ctx) => {
      if (ctx !== null || wildcard === '') return ctx;
      const w = this.cached(wildcard);
      return w !== undefined ? w : this.load(wildcard);
    });
  }

  /** A cached context, null for a name known to have none, undefined when not known. */
  private cached(name: string): tls.SecureContext | null | undefined {
    const ctx = this.cache.get(name);
    if (ctx !== undefined) {
      this.cache.delete(name);
      this.cache.set(name, ctx);
      return ctx;
    }
    if (this.missing.has(name)) return null;
    const retryAt = this.failed.get(name);
    if (retryAt !== undefined) {
      if (Date.now() < retryAt) return null;
      this.failed.delete(name);
    }
    return undefined;
  }

  /** Loads `name` (an exact name or a `*.` one) from the directory, then the source; one load per name. */
  private load(name: string): Promise<tls.SecureContext | null> {
    let pending = this.loading.get(name);
    if (pending !== undefined) return pending;
    // A load from before a reload settles into nothing: what it learned may be stale.
    const generation = this.generation;
    const current = () => generation === this.generation && this.loading.get(name) === pending;
    pending = this.fetch(name).then(
      (ctx) => {
        if (current()) {
          this.loading.delete(name);
          this.remember(name, ctx);
        }
        return ctx;
      },
      (err: NetloomError) => {
        this.log.error('tls: certificate refused', { servername: name, error: err.message });
        if (!current()) return null;
        this.loading.delete(name);
        // Asked again after a short while (a source may recover), not at every handshake meanwhile.
        this.failed.set(name, Date.now() + FAILED_RETRY_MS);
        if (this.failed.size > this.tls.contextCacheSize)
          this.failed.delete(this.failed.keys().next().value!);
        return null;
      },
    );
    this.loading.set(name, pending);
    return pending;
  }

  private async fetch(name: string): Promise<tls.SecureContext | null> {
    const dir = this.tls.certificateDirectory;
    if (dir !== undefined) {
      const base = join(dir, fileBase(name));
      const pair = { certFile: `${base}.crt`, keyFile: `${base}.key` };
      try {
        return await this.contextOf(pair, `${dir}: ${fileBase(name)}`);
      } catch (err) {
        const cause = (err as NetloomError).cause as NodeJS.ErrnoException | undefined;
        // A name without files is simply not in the directory; anything else is a broken pair.
        if (cause?.code !== 'ENOENT') throw err;
      }
    }
    if (this.source !== null) {
      let found: LoadedCertificate | null;
      let timer: NodeJS.Timeout | undefined;
      try {
        // A source that never answers must not hold this name's handshakes (nor its later ones) forever.
        const limit = new Promise<never>((_, reject) => {
          // Half the handshake's time: the handshake waiting on it still gets the default certificate.
          const ms = Math.max(1, Math.floor(this.tls.handshakeTimeout / 2));
          timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
        });
        found = await Promise.race([this.source.load(name), limit]);
      } catch (err) {
        throw tlsError(`certificate source failed for ${name} (${reason(err)})`, err);
      } finally {
        clearTimeout(timer);
      }
      if (found !== null && found !== undefined) return this.contextOf(found, `certificate source: ${name}`);
    }
    return null;
  }

  private remember(name: string, ctx: tls.SecureContext | null): void {
    const map: Map<string, unknown> = ctx === null ? this.missing : this.cache;
    map.delete(name);
    map.set(name, ctx ?? true);
    if (map.size > this.tls.contextCacheSize) map.delete(map.keys().next().value!);
  }

  /** Drops what is known of `name` (a changed certificate): the next handshake naming it loads it again. */
  forget(name: string): void {
    this.missing.delete(name);
    if (this.cache.has(name)) this.schedule(`cache:${name}`);
  }

  /** Re-reads every certificate now (the engine's `reloadCertificates`); the problems found, in words. */
  async reload(): Promise<string[]> {
    const problems: string[] = [];
    this.missing.clear();
    this.failed.clear();
    this.loading.clear(); // a load that hangs is not waited for again
    this.generation++;
    const keys = [
      'default',
      ...[...this.named.keys()].map((n) => `named:${n}`),
      ...[...this.cache.keys()].map((n) => `cache:${n}`),
    ];
    for (const key of keys) {
      const problem = await this.refresh(key);
      if (problem !== null) problems.push(problem);
    }
    return problems;
  }

  /** Reloads one certificate (`default`, `named:<name>` or `cache:<name>`); a problem keeps the old one. */
  private async refresh(key: string): Promise<string | null> {
    try {
      if (key === 'default') {
        if (this.defaultPair === null) return null;
        const loaded = await this.readOwned(this.defaultPair, 'tls');
        if (!this.changed(key, loaded)) return null;
        this.defaultCtx = await this.contextOf(loaded, 'tls');
        this.defaultLoaded = loaded;
        this.fingerprints.set(key, fingerprint(loaded));
        this.onDefaultChange?.();
      } else if (key.startsWith('named:')) {
        const name = key.slice(6);
        const what = `tls.certificates["${name}"]`;
        const loaded = await this.readOwned(this.tls.certificates[name]!, what);
        if (!this.changed(key, loaded)) return null;
        this.named.set(name, await this.contextOf(loaded, what));
        this.fingerprints.set(key, fingerprint(loaded));
      } else {
        const name = key.slice(6);
        const ctx = await this.fetch(name);
        if (ctx === null) {
          this.cache.delete(name);
          this.remember(name, null);
        } else if (this.cache.has(name)) this.cache.set(name, ctx);
      }
      return null;
    } catch (err) {
      const message = `${(err as Error).message}; the previous certificate stays`;
      this.log.error('tls: new certificate refused', { error: message });
      return message;
    }
  }

  /** Reads a pair's PEM (files where it names them); a read failure is `ERR_NETLOOM_TLS` naming `what`. */
  private async readOwned(pair: CertificatePair, what: string): Promise<LoadedCertificate> {
    try {
      return await readPair(pair);
    } catch (err) {
      throw tlsError(`${what}: the certificate does not load (${reason(err)})`, err);
    }
  }

  /** Whether `loaded` differs from what `key` serves now (an event for an unchanged file changes nothing). */
  private changed(key: string, loaded: LoadedCertificate): boolean {
    return this.fingerprints.get(key) !== fingerprint(loaded);
  }

  private schedule(key: string): void {
    this.due.add(key);
    if (this.dueTimer !== null) clearTimeout(this.dueTimer);
    this.dueTimer = setTimeout(() => {
      this.dueTimer = null;
      const keys = [...this.due];
      this.due.clear();
      void (async () => {
        for (const k of keys) {
          const problem = await this.refresh(k);
          if (problem === null) this.log.info('tls: certificate reloaded', { certificate: k });
        }
      })();
    }, SETTLE_MS);
    this.dueTimer.unref();
  }

  /** Watches the directories of every certificate file, the certificate directory, and schedules reloads. */
  private watchFiles(): void {
    const dirs = new Set<string>();
    const own = (path: string | undefined, key: string) => {
      if (path === undefined) return;
      this.fileOwners.set(path, key);
      const dir = dirname(path);
      dirs.add(dir);
      let owners = this.dirOwners.get(dir);
      if (owners === undefined) {
        owners = new Set();
        this.dirOwners.set(dir, owners);
      }
      owners.add(key);
    };
    if (this.defaultPair !== null) {
      own(this.defaultPair.certFile, 'default');
      own(this.defaultPair.keyFile, 'default');
    }
    for (const [name, pair] of Object.entries(this.tls.certificates)) {
      own(pair.certFile, `named:${name}`);
      own(pair.keyFile, `named:${name}`);
    }
    const certDir = this.tls.certificateDirectory;
    if (certDir !== undefined) dirs.add(certDir);
    for (const dir of dirs) this.watchDir(dir, certDir);
    // A watched directory removed and made again (a volume remounted) leaves its watcher deaf: look every
    // few seconds whether each is still the directory it watches, and watch it again if not.
    this.recheck = setInterval(() => this.recheckDirs(certDir), RECHECK_MS);
    this.recheck.unref();
  }

  /** Watches `dir` (replacing a watcher it had); remembers its inode to notice a replaced directory. */
  private watchDir(dir: string, certDir: string | undefined): void {
    this.watchers.get(dir)?.watcher?.close();
    this.watchers.delete(dir);
    let ino = '';
    try {
      ino = dirIdentity(dir);
      const watcher = watch(dir, { persistent: false }, (_event, file) => {
        if (file === null) return;
        const path = join(dir, file);
        const owner = this.fileOwners.get(path);
        if (owner !== undefined) this.schedule(owner);
        // Another entry changed (Kubernetes swaps a `..data` symlink under unchanged names): every pair
        // read from here is read again, and swapped only if its bytes differ.
        else this.changedDir(dir, certDir);
        if (dir === certDir) {
          const name = nameOfFile(basename(file));
          if (name !== null) this.forget(name);
        }
      });
      watcher.on('error', (err) => this.log.error('tls: watching certificates failed', { dir, error: err }));
      this.watchers.set(dir, { watcher, ino });
    } catch (err) {
      this.log.error('tls: cannot watch certificates now; looking again every few seconds', {
        dir,
        error: err,
      });
      this.watchers.set(dir, { watcher: null, ino });
    }
  }

  /** Everything read from `dir` is read again (swapped only where the bytes differ). */
  private changedDir(dir: string, certDir: string | undefined): void {
    for (const key of this.dirOwners.get(dir) ?? []) this.schedule(key);
    if (dir === certDir) {
      this.missing.clear();
      for (const cached of this.cache.keys()) this.schedule(`cache:${cached}`);
    }
  }

  private recheckDirs(certDir: string | undefined): void {
    for (const [dir, w] of [...this.watchers]) {
      let ino = '';
      try {
        ino = dirIdentity(dir);
      } catch {}
      if (ino === w.ino && w.watcher !== null) continue;
      if (ino === '') {
        w.watcher?.close();
        this.watchers.set(dir, { watcher: null, ino: '' });
        continue;
      }
      this.watchDir(dir, certDir);
      this.changedDir(dir, certDir);
    }
  }

  /** Stops watching (the loop stops). */
  dispose(): void {
    for (const w of this.watchers.values()) w.watcher?.close();
    this.watchers.clear();
    if (this.recheck !== null) clearInterval(this.recheck);
    this.recheck = null;
    this.stopSource?.();
    this.stopSource = null;
    if (this.dueTimer !== null) clearTimeout(this.dueTimer);
  }
}

/** A directory's identity: its inode and birth time (a directory made again may reuse the inode number). */
function dirIdentity(dir: string): string {
  const st = statSync(dir);
  return `${st.ino}:${st.birthtimeMs}`;
}

/** A hash of a pair's PEM bytes. */
function fingerprint(loaded: LoadedCertificate): string {
  return createHash('sha256')
    .update(typeof loaded.cert === 'string' ? loaded.cert : Buffer.from(loaded.cert))
    .update('\0')
    .update(typeof loaded.key === 'string' ? loaded.key : Buffer.from(loaded.key))
    .digest('hex');
}

/** The file base of a certificate name in a certificate directory (`*.` is written `_wildcard.`). */
function fileBase(name: string): string {
  return name.startsWith('*.') ? `_wildcard${name.slice(1)}` : name;
}

/** The certificate name of a directory file (`x.crt`/`x.key`), or null for other files. */
function nameOfFile(file: string): string | null {
  const m = /^(.+)\.(crt|key)$/.exec(file.toLowerCase());
  if (m === null) return null;
  return m[1]!.startsWith('_wildcard.') ? `*${m[1]!.slice(9)}` : m[1]!;
}

/** The TLS layer's error: code `ERR_NETLOOM_TLS`. */
export function tlsError(message: string, cause?: unknown): NetloomError {
  return netloomError('ERR_NETLOOM_TLS', message, cause);
}
