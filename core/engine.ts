import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { extname, isAbsolute, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type Address, formatAddress, parseAddress } from './address.ts';
import { netloomError } from './errors.ts';
import type { HandlerExport } from './handler.ts';
import { EventLoop } from './loop.ts';
import { engineSamples } from './metrics/engine-metrics.ts';
import { type MetricSample, memorySamples, renderExposition } from './metrics/exposition.ts';
import { createMetricsMemory, MetricsMemory } from './metrics/memory.ts';
import { type IoPath, verifyIoPath } from './node-internals.ts';
import { type EngineOptions, type ResolvedOptions, resolveOptions } from './options.ts';
import { countRestart, createStatsBuffer, type EngineStats, readStats, settleCrashedLoop } from './stats.ts';
import { tlsError } from './tls/certificates.ts';
import { type ResolvedTls, resolveTls, type TlsOptions } from './tls/options.ts';
import { createTicketKeys, rotateTicketKeys } from './tls/ticket-keys.ts';

/** @internal What a loop worker receives as `workerData`. */
export interface WorkerInit {
  handlerModule: string;
  index: number;
  loops: number;
  options: ResolvedOptions;
  statsBuffer: SharedArrayBuffer;
  metricsBuffer: SharedArrayBuffer;
  engineId: string;
  port: number | undefined;
  io: IoPath;
  tlsKeys: SharedArrayBuffer | undefined;
}

/** @internal Messages from a loop worker to the engine. */
export type WorkerMessage =
  | { type: 'ready'; port: number }
  | { type: 'boot-failed'; error: unknown }
  | { type: 'shutdown' }
  | { type: 'stopped' }
  | { type: 'tls-reloaded'; id: number; problems: string[] };

/** Options of {@link Engine.stop}. */
export interface StopOptions {
  /** Milliseconds busy connections get before they are force-closed (default: `shutdownDeadline`). */
  deadline?: number;
}

/** Events an {@link Engine} emits. */
export interface EngineEvents {
  /** A loop worker crashed (an exception escaped the handler's own timers or promises). */
  loopError: [error: unknown, loop: number];
  /** A crashed loop worker was replaced and listens again. */
  loopRestart: [loop: number];
  /** A loop worker crashed more than `maxRestarts` times within `restartWindow` and is not restarted. */
  loopFailed: [loop: number];
}

let announced = false;

/** One line per process saying how the engine moves bytes (and a warning when a fast path is missing). */
function announceIo(io: IoPath): void {
  if (announced) return;
  announced = true;
  const line = `netloom: I/O path read=${io.read} write=${io.write} strings=${io.strings}`;
  if (io.fallbacks.length === 0) process.stderr.write(`${line}\n`);
  else warnOnce('NETLOOM_IO_FALLBACK', `${line} (slower: ${io.fallbacks.join('; ')})`);
}

const warned = new Set<string>();
function warnOnce(code: string, message: string): void {
  if (warned.has(code)) return;
  warned.add(code);
  process.emitWarning(message, { code });
}

/** Why more than one loop cannot run here, or undefined when it can. */
function multiLoopProblem(address: Address, options: ResolvedOptions): string | undefined {
  if (address.kind === 'unix') {
    return 'SO_REUSEPORT does not spread connections over Unix sockets; netloom serves unix:// addresses on one loop';
  }
  if (!options.reusePort) return 'reusePort is off and more than one loop needs it; running one loop';
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  if (major < 22 || (major === 22 && minor < 12) || (major === 23 && minor < 1)) {
    return `Node ${process.version} has no reusePort for listen() (needs >= 22.12); running one loop`;
  }
  if (!['linux', 'freebsd', 'sunos', 'aix'].includes(process.platform)) {
    return `SO_REUSEPORT does not balance connections on ${process.platform}; running one loop`;
  }
  return undefined;
}

/** Module specifier of a handler, as a URL string a worker can import. */
function handlerSpecifier(handler: string | URL): string {
  if (handler instanceof URL) return handler.href;
  if (/^[a-z][a-z0-9+.-]*:/i.test(handler)) return handler;
  if (handler.startsWith('.') || isAbsolute(handler)) return pathToFileURL(resolvePath(handler)).href;
  return handler; // a bare package specifier
}

/** @internal Loads a handler module's export. */
export async function importHandler(specifier: string): Promise<HandlerExport> {
  const mod = (await import(specifier)) as { default?: HandlerExport; handler?: HandlerExport };
  const exported = mod.default ?? mod.handler;
  if (exported === undefined || exported === null) {
    throw netloomError(
      'ERR_NETLOOM_HANDLER',
      `module ${specifier} exports no handler (as default or "handler")`,
    );
  }
  return exported;
}

interface LoopSlot {
  index: number;
  worker: Worker | null;
  stopped: boolean;
  crashes: number[];
  exited: Promise<void>;
}

const WORKER_URL = new URL(`./loop-worker${extname(new URL(import.meta.url).pathname)}`, import.meta.url);

/**
 * A running server: N loops listening on one address. Made by {@link serve}. Its methods may be called from
 * the thread that called `serve`.
 */
export class Engine extends EventEmitter<EngineEvents> {
  /** The address every loop listens on, with the real port when port 0 was asked. */
  address = '';
  /** The TCP port (0 for Unix sockets). */
  port = 0;
  /** How many loops run (1 after a fallback). */
  readonly loops: number;
  /** The options in force, defaults applied. */
  readonly options: ResolvedOptions;
  /** Resolves when the engine has stopped, whoever asked. */
  readonly done: Promise<void>;

  private readonly statsBuffer: SharedArrayBuffer;
  private readonly metricsMemory: MetricsMemory;
  /** A name unique to this engine, shared by its loops (see `EventLoop.engineId`). */
  readonly id = `netloom-${process.pid}-${randomUUID()}`;
  private readonly parsed: Address;
  private readonly specifier: string | null;
  private readonly inline: HandlerExport | null;
  private loop: EventLoop | null = null;
  private readonly slots: LoopSlot[] = [];
  private stopping: Promise<void> | null = null;
  private resolveDone!: () => void;
  private io: IoPath | null = null;
  /** Session-ticket keys every loop shares, rotated by `keyTimer` (TLS listeners only). */
  private readonly tlsKeys: SharedArrayBuffer | undefined;
  /** The TLS settings in force (`updateTls` changes them; a restarted loop starts with them). */
  private tlsOptions: ResolvedTls | null;
  private keyTimer: NodeJS.Timeout | null = null;
  private nextReload = 1;
  private readonly reloads = new Map<
    number,
    { left: number; problems: string[]; done: (p: string[]) => void }
  >();

  /** @internal Use {@link serve}. */
  constructor(handler: string | URL | HandlerExport, options: ResolvedOptions, loops: number) {
    super();
    this.options = options;
    this.loops = loops;
    this.parsed = parseAddress(options.address);
    this.statsBuffer = createStatsBuffer(loops);
    this.metricsMemory = new MetricsMemory(
      createMetricsMemory({ rows: loops, series: options.metricsSeries, cells: options.metricsCells }),
    );
    this.specifier = typeof handler === 'string' || handler instanceof URL ? handlerSpecifier(handler) : null;
    this.inline = this.specifier === null ? (handler as HandlerExport) : null;
    this.tlsOptions = options.tls;
    if (options.tls !== null) {
      this.tlsKeys = createTicketKeys();
      const keys = this.tlsKeys;
      this.keyTimer = setInterval(() => rotateTicketKeys(keys), options.tls.ticketKeyRotation);
      this.keyTimer.unref();
    }
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
  }

  /** Counters of every loop, read from shared memory (no messages, callable while loops run), and the I/O path. */
  stats(): EngineStats {
    return readStats(this.statsBuffer, this.io!);
  }

  /**
   * Every metric sample of the engine: its per-loop counters (`listener` is the engine's address) and the
   * series the loops made (`loop.metrics`), summed over the loops. Any thread holding the engine; no
   * message to the loops (a scrape is at most a few milliseconds behind them).
   */
  metricSamples(): MetricSample[] {
    return [
      ...engineSamples(this.stats(), this.address, this.metricsMemory.dropped),
      ...memorySamples(this.metricsMemory),
    ];
  }

  /** {@link metricSamples} in the Prometheus text format (serve it as {@link EXPOSITION_CONTENT_TYPE}). */
  metrics(): string {
    return renderExposition(this.metricSamples());
  }

  /** Series the loops could not make (the metrics memory was full): they take updates that are not kept. */
  get metricsDropped(): number {
    return this.metricsMemory.dropped;
  }

  /** @internal */
  async start(): Promise<void> {
    const io = await verifyIoPath();
    this.io = io;
    announceIo(io);
    if (this.loops === 1) {
      const loop = new EventLoop({
        index: 0,
        loops: 1,
        options: this.options,
        statsBuffer: this.statsBuffer,
        metricsBuffer: this.metricsMemory.buffer,
        engineId: this.id,
        requestShutdown: () => void this.stop(),
        io,
        tlsKeys: this.tlsKeys,
      });
      this.loop = loop;
      try {
        const exported = this.inline ?? (await importHandler(this.specifier!));
        await loop.boot(exported);
        this.port = await loop.listen(this.parsed);
      } catch (err) {
        // Whatever boot started (timers, dials) must not keep the process alive after a failed start.
        await loop.stop(0);
        throw err;
      }
      this.address = loop.address;
      return;
    }
    try {
      this.port = await this.spawn(0, undefined);
      await Promise.all(Array.from({ length: this.loops - 1 }, (_, i) => this.spawn(i + 1, this.port)));
    } catch (err) {
      await this.stop({ deadline: 0 });
      throw err;
    }
    this.address =
      this.parsed.kind === 'tcp'
        ? formatAddress({ ...this.parsed, port: this.port })
        : formatAddress(this.parsed);
  }

  /** Starts loop `index` on a worker; resolves with its port once it listens. */
  private spawn(index: number, port: number | undefined): Promise<number> {
    let slot = this.slots[index];
    if (slot === undefined) {
      slot = { index, worker: null, stopped: false, crashes: [], exited: Promise.resolve() };
      this.slots[index] = slot;
    }
    const init: WorkerInit = {
      handlerModule: this.specifier!,
      index,
      loops: this.loops,
      options: { ...this.options, tls: this.tlsOptions },
      statsBuffer: this.statsBuffer,
      metricsBuffer: this.metricsMemory.buffer,
      engineId: this.id,
      port,
      io: this.io!,
      tlsKeys: this.tlsKeys,
    };
    const worker = new Worker(WORKER_URL, { workerData: init, name: `netloom-loop-${index}` });
    slot.worker = worker;
    slot.stopped = false;
    const current = slot;
    return new Promise<number>((resolve, reject) => {
      let ready = false;
      current.exited = new Promise<void>((onExit) => {
        worker.on('exit', (code) => {
          onExit();
          if (!ready) {
            reject(
              netloomError('ERR_NETLOOM_LOOP', `loop ${index} exited with code ${code} before listening`),
            );
            return;
          }
          if (!current.stopped && this.stopping === null) this.crashed(current);
        });
      });
      worker.on('message', (msg: WorkerMessage) => {
        if (msg.type === 'ready') {
          ready = true;
          resolve(msg.port);
        } else if (msg.type === 'boot-failed') {
          reject(msg.error);
        } else if (msg.type === 'shutdown') {
          void this.stop();
        } else if (msg.type === 'stopped') {
          current.stopped = true;
        } else if (msg.type === 'tls-reloaded') {
          this.reloaded(msg.id, msg.problems);
        }
      });
      worker.on('error', (err) => {
        if (!ready) {
          reject(err);
          return;
        }
        if (this.listenerCount('loopError') === 0) {
          process.stderr.write(`netloom: loop ${index} crashed: ${(err as Error)?.stack ?? String(err)}\n`);
        }
        this.emit('loopError', err, index);
      });
    });
  }

  /**
   * Re-reads every certificate of a TLS listener on every loop now (rotation without waiting for the file
   * watch): new handshakes use what loaded; a certificate that does not load keeps the previous one and
   * makes the promise reject with `ERR_NETLOOM_TLS`, naming each problem. Established connections keep
   * theirs.
   */
  async reloadCertificates(): Promise<void> {
    if (this.tlsOptions === null) throw tlsError('the listener has no tls option');
    const problems = await this.askLoops({ type: 'tls-reload' }, (loop) => loop.reloadCertificates());
    if (problems.length > 0) throw tlsError(`certificates not reloaded: ${problems.join('; ')}`);
  }

  /**
   * Replaces the listener's TLS settings on every loop (certificates, SNI, versions, client certificates),
   * keeping the shared ticket keys: new handshakes use them, handshakes in progress and established
   * connections keep what they had. Rejects with `ERR_NETLOOM_OPTION` for bad options (nothing changed) and
   * `ERR_NETLOOM_TLS` naming each loop's problem when certificates do not load (every loop then goes back to
   * the settings in force). A listener without TLS cannot gain it here (that is a new listener).
   */
  async updateTls(options: TlsOptions): Promise<void> {
    if (this.tlsOptions === null) throw tlsError('the listener has no tls option; TLS needs a new listener');
    const resolved = resolveTls(options);
    const problems = await this.askLoops({ type: 'tls-update', tls: resolved }, (loop) =>
      loop.updateTls(resolved),
    );
    if (problems.length > 0) throw tlsError(`TLS settings not applied: ${problems.join('; ')}`);
    this.tlsOptions = resolved; // loops restarted after a crash start with these
  }

  /** Runs `local` on the inline loop, or posts `msg` to every worker and gathers their problems. */
  private async askLoops(
    msg: { type: 'tls-reload' } | { type: 'tls-update'; tls: ResolvedTls },
    local: (loop: EventLoop) => Promise<string[]>,
  ): Promise<string[]> {
    if (this.loop !== null) return [...new Set(await local(this.loop))];
    const workers = this.slots.map((s) => s.worker).filter((w): w is Worker => w !== null);
    const id = this.nextReload++;
    const problems = await new Promise<string[]>((done) => {
      // A loop that crashed meanwhile never answers: give up on it after a while.
      const timer = setTimeout(() => this.reloaded(id, ['a loop did not answer within 10 s'], true), 10_000);
      timer.unref();
      this.reloads.set(id, {
        left: workers.length,
        problems: [],
        done: (p) => {
          clearTimeout(timer);
          done(p);
        },
      });
      for (const w of workers) w.postMessage({ ...msg, id });
    });
    return [...new Set(problems)];
  }

  private reloaded(id: number, problems: string[], last = false): void {
    const r = this.reloads.get(id);
    if (r === undefined) return;
    r.problems.push(...problems);
    if (--r.left > 0 && !last) return;
    this.reloads.delete(id);
    r.done(r.problems);
  }

  /** A loop's worker died: account for its connections and start a new one. */
  private crashed(slot: LoopSlot): void {
    settleCrashedLoop(this.statsBuffer, slot.index);
    this.metricsMemory.settleRow(slot.index);
    const now = Date.now();
    slot.crashes = slot.crashes.filter((t) => now - t < this.options.restartWindow);
    slot.crashes.push(now);
    if (slot.crashes.length > this.options.maxRestarts) {
      process.stderr.write(`netloom: loop ${slot.index} crashed too often; not restarting it\n`);
      this.metricsMemory.releaseRow(slot.index);
      this.emit('loopFailed', slot.index);
      return;
    }
    countRestart(this.statsBuffer, slot.index);
    this.spawn(slot.index, this.port).then(
      () => this.emit('loopRestart', slot.index),
      (err) => {
        process.stderr.write(`netloom: restarting loop ${slot.index} failed: ${String(err)}\n`);
        // A loop whose boot failed stays up (its writer could publish again): end it before its row goes.
        const failed = slot.worker;
        void (failed === null ? Promise.resolve(0) : failed.terminate()).then(() => {
          this.metricsMemory.settleRow(slot.index);
          this.metricsMemory.releaseRow(slot.index);
        });
        this.emit('loopFailed', slot.index);
      },
    );
  }

  /**
   * Stops gracefully: every loop stops accepting and runs `onShutdown`, idle connections close, busy ones get
   * until the deadline, then the rest are destroyed. Resolves when every loop has exited. Idempotent.
   */
  stop(options: StopOptions = {}): Promise<void> {
    if (this.stopping !== null) return this.stopping;
    const deadline = options.deadline ?? this.options.shutdownDeadline;
    if (this.keyTimer !== null) clearInterval(this.keyTimer);
    this.keyTimer = null;
    for (const [id, r] of this.reloads) {
      this.reloads.delete(id);
      r.done([...r.problems, 'the engine is stopping']);
    }
    this.stopping = (async () => {
      if (this.loop !== null) {
        await this.loop.stop(deadline);
      } else {
        await Promise.all(
          this.slots.map(async (slot) => {
            const worker = slot.worker;
            if (worker === null) return;
            worker.postMessage({ type: 'stop', deadline });
            // A worker kept alive by its handler's own timers is ended once its loop reports stopped.
            const grace = setTimeout(() => void worker.terminate(), deadline + 2000);
            await slot.exited;
            clearTimeout(grace);
          }),
        );
      }
      this.resolveDone();
    })();
    return this.stopping;
  }
}

/**
 * Starts an engine. `handler` is a module specifier (a URL, a path, or a package name) whose module exports
 * the handler as `default` or `handler`; every loop imports it on its own thread. With `loops: 1` a handler
 * object (or factory) may be passed directly. Resolves once every loop listens.
 *
 * @example
 * const engine = await serve(new URL('./handler.ts', import.meta.url), { address: 'tcp://0.0.0.0:9000', loops: 'auto' });
 * process.on('SIGTERM', () => engine.stop());
 */
export async function serve(
  handler: string | URL | HandlerExport,
  options: EngineOptions = {},
): Promise<Engine> {
  const resolved = resolveOptions(options);
  const address = parseAddress(resolved.address);
  let loops = resolved.loops;
  if (loops > 1) {
    const problem = multiLoopProblem(address, resolved);
    if (problem !== undefined) {
      warnOnce('NETLOOM_SINGLE_LOOP', problem);
      loops = 1;
    }
  }
  const isSpecifier = typeof handler === 'string' || handler instanceof URL;
  if (loops > 1 && !isSpecifier) {
    throw netloomError(
      'ERR_NETLOOM_OPTION',
      'more than one loop needs the handler as a module specifier (each loop imports it on its own thread)',
    );
  }
  const engine = new Engine(handler, { ...resolved, loops }, loops);
  await engine.start();
  return engine;
}
