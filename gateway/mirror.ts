/**
 * Traffic mirroring (`routes[].mirror`): a share of a route's requests is sent, as well, to a shadow
 * upstream whose answers are read and discarded. The client's answer never waits for the shadow and never
 * sees it fail: a mirror is fire-and-forget, bounded by what it may hold.
 *
 * What the shadow gets: the request as the route's upstream gets it (the route's header policies, the
 * `onRequest` filters' header changes, the proxy's ids and forwarding fields), plus `x-netloom-mirror: 1`,
 * so a shadow can tell a copy from live traffic. `onUpstreamRequest` filters run for the route's upstream
 * only (they may sign or count per attempt). Requests the filters answered (a rate limit, an auth refusal)
 * are not mirrored; WebSocket upgrades and CONNECT tunnels never are.
 *
 * Bounds: a request is mirrored only if its body fits `maxBody` (a chunked body that grows past it stops
 * its mirror), and at most `maxInFlight` mirrors of the route run at once in the process (more are
 * skipped, counted). The head is copied when the mirror starts and body chunks are copied while the
 * shadow's connection is not ready, so a mirror holds at most its head and `maxBody`. It uses the shadow
 * upstream's balancer, pool, timeouts and passive health, not its retries: a failed mirror is counted,
 * not sent again.
 */
import { z } from 'zod';
import type { EventLoop } from '../core/index.ts';
import type {
  ClientResponse,
  RawRequestHeaders,
  RequestFraming,
  ResponseSink,
} from '../protocols/http1/index.ts';
import type { FailureKind } from './completion.ts';
import type { PoolError, PoolRequester, UpstreamExchange } from './pool.ts';
import type { SharedCounter, SharedState } from './shared-state.ts';
import { newSpanId } from './tracing.ts';
import { IDEMPOTENT, type Upstream, type UpstreamTarget } from './upstream.ts';
import { copyHead, type HeaderOverride, type HeadInput, prepareHead } from './upstream-head.ts';

/** A route's mirror (`routes[].mirror`). */
export const mirrorSettings = z
  .object({
    /** The shadow upstream (a name under `upstreams`). */
    upstream: z.string().min(1),
    /** The share of the route's requests mirrored, 0-100 (chosen at random per request). */
    percent: z.number().min(0).max(100).default(100),
    /** Requests with a larger body are not mirrored (bytes; a chunked body past it stops its mirror). */
    maxBody: z
      .number()
      .int()
      .min(0)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
    /** Mirrors of this route running at once in the process; beyond it requests are not mirrored. */
    maxInFlight: z.number().int().min(1).max(1_000_000).default(256),
  })
  .strict();

export type MirrorSettings = z.infer<typeof mirrorSettings>;

/** What the admin endpoint shows of a route's mirror, summed over the loops. */
export interface MirrorStats {
  /** Mirrors sent on their way (a target was picked). */
  started: number;
  /** Mirrors the shadow answered (any status: its answer is discarded). */
  answered: number;
  /** Mirrors that failed: no connection, a timeout, the shadow closed or answered badly. */
  failed: number;
  /** Mirrors the gateway gave up: the client's body broke off or grew past `maxBody`. */
  aborted: number;
  /** Sampled requests not mirrored: `maxInFlight` reached, a body over `maxBody`, no healthy shadow target. */
  skipped: number;
  /** Mirrors running now. */
  inFlight: number;
}

type MirrorCounters = Record<keyof MirrorStats, SharedCounter>;

/**
 * The mirrors each loop runs now: aborted when the loop begins to stop (a shadow must not hold a graceful
 * stop until its deadline), and no new ones start after that.
 */
const running = new WeakMap<EventLoop, { stopping: boolean; mirrors: Set<MirrorExchange> }>();

function runningOn(loop: EventLoop): { stopping: boolean; mirrors: Set<MirrorExchange> } {
  let r = running.get(loop);
  if (r === undefined) {
    r = { stopping: false, mirrors: new Set() };
    running.set(loop, r);
  }
  return r;
}

/** The loop is stopping: its mirrors are aborted and no new ones start (the dispatcher's close). */
export function stopMirrors(loop: EventLoop): void {
  const r = runningOn(loop);
  r.stopping = true;
  for (const m of [...r.mirrors]) m.abandonNow();
}

function mirrorCounters(shared: SharedState, route: string): MirrorCounters {
  const c = (what: string) => shared.counter(`mirror|${route}|${what}`);
  return {
    started: c('started'),
    answered: c('answered'),
    failed: c('failed'),
    aborted: c('aborted'),
    skipped: c('skipped'),
    inFlight: c('in-flight'),
  };
}

/** The figures of route `route`'s mirror (main thread or a loop). */
export function mirrorStats(shared: SharedState, route: string): MirrorStats {
  const c = mirrorCounters(shared, route);
  return {
    started: c.started.get(),
    answered: c.answered.get(),
    failed: c.failed.get(),
    aborted: c.aborted.get(),
    skipped: c.skipped.get(),
    inFlight: c.inFlight.get(),
  };
}

/** The field that marks a mirror's request (the gateway's own: never a client's or a filter's). */
export const MIRROR_MARKER = 'x-netloom-mirror';

const MIRROR_FIELD: HeaderOverride = {
  lower: 'x-netloom-mirror',
  name: 'x-netloom-mirror',
  value: '1',
  append: false,
};

/** One route's mirror, on one loop. */
export class RouteMirror {
  readonly upstream: Upstream;
  private readonly settings: MirrorSettings;
  private readonly counters: MirrorCounters;
  /** This loop's share of `inFlight` (`loopId`'s own cell). */
  private readonly ownInFlight: SharedCounter;
  private readonly loop: EventLoop;

  /** `loopId` names the loop across restarts (`listener:index`). */
  constructor(
    settings: MirrorSettings,
    upstream: Upstream,
    route: string,
    shared: SharedState,
    loop: EventLoop,
    loopId: string,
  ) {
    this.settings = settings;
    this.upstream = upstream;
    this.counters = mirrorCounters(shared, route);
    this.ownInFlight = shared.counter(`mirror|${route}|in-flight|${loopId}`);
    this.loop = loop;
  }

  /**
   * A loop starting (or restarted after a crash) has no mirror running: what its cell still counts died
   * with the thread before it, and leaves the process-wide count. Called once a loop boots, not at reloads.
   */
  reclaimCrashed(): void {
    const left = this.ownInFlight.get();
    if (left === 0) return;
    this.ownInFlight.add(-left);
    this.counters.inFlight.add(-left);
  }

  /**
   * Starts a mirror of the request `input` describes (sent upstream as `method` to `target`), or returns
   * null: not sampled, or skipped. Runs where the call connects (its head is read now, while it is valid).
   */
  start(input: HeadInput, method: string, target: string): MirrorExchange | null {
    const { percent, maxBody, maxInFlight } = this.settings;
    if (percent < 100 && !(Math.random() * 100 < percent)) return null;
    const here = runningOn(this.loop);
    if (here.stopping) return null;
    const req = input.req;
    const c = this.counters;
    if (req.contentLength > maxBody) {
      c.skipped.add();
      return null;
    }
    if (c.inFlight.add() > maxInFlight) {
      c.inFlight.add(-1);
      c.skipped.add();
      return null;
    }
    const upstream = this.upstream;
    const key = upstream.config.balance === 'consistent_hash' ? upstream.hashKey(req) : undefined;
    const picked = upstream.pick(key, null);
    if (picked === null) {
      c.inFlight.add(-1);
      c.skipped.add();
      return null;
    }
    this.ownInFlight.add();
    c.started.add();
    const own: HeadInput = {
      req,
      route: input.route,
      // The marker is the gateway's own field (filters may not set it, a client's is dropped).
      overrides: input.overrides === null ? [MIRROR_FIELD] : [...input.overrides, MIRROR_FIELD],
      requestId: input.requestId,
      // The copy is not the live request's child span: a span id of its own, marked not sampled so shadow
      // traffic stays out of the live traces.
      traceparent: input.traceparent === '' ? '' : `${input.traceparent.slice(0, 36)}${newSpanId()}-00`,
    };
    // Prepared and copied at once: the request's fields are views of a buffer the next request reuses.
    const address = req.remoteAddress;
    const prepared = prepareHead(own, picked.host, address);
    const bytes = Buffer.allocUnsafe(prepared.size);
    const head = bytes.subarray(0, copyHead(own, prepared, address, bytes, 0));
    const framing: RequestFraming =
      req.contentLength >= 0 ? req.contentLength : req.hasBody ? 'chunked' : 'none';
    const mirror = new MirrorExchange(
      this.loop,
      upstream,
      picked,
      c,
      this.ownInFlight,
      here.mirrors,
      maxBody,
      {
        method,
        target,
        host: prepared.host,
        head,
        framing,
      },
    );
    mirror.begin();
    return mirror;
  }
}

interface MirrorRequest {
  readonly method: string;
  readonly target: string;
  readonly host: string;
  /** The header lines, copied. */
  readonly head: Buffer;
  readonly framing: RequestFraming;
}

// A mirror's states. The shadow's response may come while the body still goes up (an early answer).
const CONNECTING = 0; // waiting for a pooled connection (body bytes are copied meanwhile)
const STREAMING = 1; // head sent, the client's body on its way up
const SENT = 2; // the request is complete, the answer is awaited (and discarded)
const DONE = 3;

/** Does nothing: a mirror's body is never held back (what it holds is bounded by `maxBody`). */
function ignoreWritable(): void {}

/**
 * One mirrored request: it receives the client's body from the proxy call (`data`, `end`, `abandon`) and
 * finishes on its own; every way out passes through `finish`, once.
 */
export class MirrorExchange implements PoolRequester, ResponseSink, RawRequestHeaders {
  private state = CONNECTING;
  private readonly loop: EventLoop;
  private readonly upstream: Upstream;
  private readonly target: UpstreamTarget;
  private readonly counters: MirrorCounters;
  private readonly ownInFlight: SharedCounter;
  private readonly registry: Set<MirrorExchange>;
  private readonly request: MirrorRequest;
  private readonly maxBody: number;
  private client: UpstreamExchange | null = null;
  /** Body bytes (copied) that came before the connection did: one buffer, grown as needed, <= maxBody. */
  private pending: Buffer | null = null;
  private pendingLength = 0;
  private bodyBytes = 0;
  /** Body bytes written to the shadow's connection (a request whose body went out is not sent again). */
  private written = 0;
  private bodyEnded: boolean;
  private trailers: readonly [string, string][] = [];
  private status = 0;
  private readonly deadlineTotal: number;
  /** The connection carried requests before (the shadow may have closed it while idle). */
  private reused = false;
  /** Times sent again: once for a stale pooled connection, twice for streams an HTTP/2 shadow refused. */
  private resends = 0;

  constructor(
    loop: EventLoop,
    upstream: Upstream,
    target: UpstreamTarget,
    counters: MirrorCounters,
    ownInFlight: SharedCounter,
    registry: Set<MirrorExchange>,
    maxBody: number,
    request: MirrorRequest,
  ) {
    this.loop = loop;
    this.upstream = upstream;
    this.target = target;
    this.counters = counters;
    this.ownInFlight = ownInFlight;
    this.registry = registry;
    this.maxBody = maxBody;
    this.request = request;
    this.bodyEnded = request.framing === 'none' || request.framing === 0;
    this.deadlineTotal = loop.now() + upstream.config.timeouts.total;
  }

  /** Asks the shadow's pool for a connection (after construction: the pool may answer at once). */
  begin(): void {
    this.registry.add(this);
    this.target.active++;
    this.target.requests++;
    this.target.pool.acquire(this);
  }

  // ---- from the proxy call ---------------------------------------------------------------------------

  /** A chunk of the client's body (a view: copied if it cannot be written now). */
  data(chunk: Buffer): void {
    if (this.state === DONE || this.bodyEnded) return;
    this.bodyBytes += chunk.length;
    if (this.bodyBytes > this.maxBody) {
      this.giveUp(new Error('the request body grew past the mirror maxBody'));
      return;
    }
    if (this.state !== CONNECTING) {
      this.written += chunk.length;
      this.client!.writeBody(chunk);
      return;
    }
    const need = this.pendingLength + chunk.length;
    let buf = this.pending;
    if (buf === null || buf.length < need) {
      const grown = Buffer.allocUnsafe(Math.min(this.maxBody, Math.max(need, 2 * (buf?.length ?? 0), 4096)));
      if (buf !== null) buf.copy(grown, 0, 0, this.pendingLength);
      buf = this.pending = grown;
    }
    chunk.copy(buf, this.pendingLength);
    this.pendingLength = need;
  }

  /** The client's body ended. */
  end(trailers: readonly [string, string][]): void {
    if (this.state === DONE || this.bodyEnded) return;
    this.bodyEnded = true;
    this.trailers = trailers;
    if (this.state === STREAMING) this.endBody(this.client!);
  }

  /** The client's body will not come whole (it broke off, or the call ended first): the mirror stops. */
  abandon(): void {
    if (this.state !== DONE && !this.bodyEnded) this.giveUp(new Error('the request body broke off'));
  }

  /** Stops the mirror whatever it is doing (the loop is stopping). */
  abandonNow(): void {
    if (this.state !== DONE) this.giveUp(new Error('the gateway is stopping'));
  }

  // ---- PoolRequester -----------------------------------------------------------------------------------

  onConnection(client: UpstreamExchange, reused: boolean): void {
    if (this.state === DONE) {
      this.target.pool.release(client);
      return;
    }
    this.client = client;
    client.poolData = this;
    client.onWritable = ignoreWritable;
    const r = this.request;
    try {
      client.request(
        { method: r.method, target: r.target, host: r.host, raw: this, framing: r.framing },
        this,
      );
    } catch (err) {
      // Cannot happen with a head the proxy could send; counted, never thrown at the loop.
      this.client = null;
      this.target.pool.release(client);
      this.finish('failed', null, err);
      return;
    }
    this.reused = reused;
    this.state = STREAMING;
    client.setDeadline(this.remaining());
    const pending = this.pending;
    if (pending !== null) {
      this.written += this.pendingLength;
      client.writeBody(pending.subarray(0, this.pendingLength));
      this.pending = null;
      this.pendingLength = 0;
    }
    if (this.bodyEnded) this.endBody(client);
  }

  onPoolError(err: PoolError): void {
    if (this.state === DONE) return;
    if (err.kind === 'closed') {
      this.finish('aborted', null); // the shadow target left the configuration: nobody's failure
      return;
    }
    this.finish(
      'failed',
      err.kind === 'connect-timeout'
        ? 'connect-timeout'
        : err.kind === 'queue'
          ? 'pool-exhausted'
          : 'connect-failed',
      err,
    );
  }

  // ---- RawRequestHeaders: the head copied at the start -----------------------------------------------------

  get size(): number {
    return this.request.head.length;
  }

  copy(buf: Buffer, p: number): number {
    return p + this.request.head.copy(buf, p);
  }

  // ---- ResponseSink: the shadow's answer, discarded -------------------------------------------------------

  onHead(response: ClientResponse): void {
    this.status = response.status;
    const client = this.client!;
    // Answered before our whole body went up: the connection's request side is unfinished.
    if (this.state === STREAMING) client.reusable = false;
    client.setDeadline(this.remaining());
  }

  onBody(): boolean {
    return true;
  }

  onEnd(): void {
    const client = this.client;
    this.client = null;
    if (this.state === STREAMING && client !== null) client.reusable = false;
    this.finish('answered', null);
  }

  onError(err: Error): void {
    if (this.state === DONE) return;
    const client = this.client;
    this.client = null;
    const code = (err as Error & { code?: string }).code;
    // The same rules as the live request's (gateway/call.ts): sent again only when the shadow cannot have
    // acted on it, and no body went out.
    const unsent =
      client !== null && !client.answered && this.written === 0 && this.request.framing === 'none';
    if (unsent && code === 'ERR_HTTP2_REFUSED' && this.resends < 2) {
      // A stream the HTTP/2 shadow did not process (GOAWAY below it, REFUSED_STREAM): nobody's failure.
      this.resend();
      return;
    }
    if (
      unsent &&
      this.reused &&
      this.resends === 0 &&
      IDEMPOTENT.has(this.request.method) &&
      code !== 'ERR_HTTP_BAD_RESPONSE' &&
      code !== 'ERR_HTTP2_STREAM_RESET' && // a stream the shadow reset was seen by it
      code !== 'ERR_NETLOOM_DEADLINE'
    ) {
      // A pooled connection the shadow closed while idle: sent once more on a fresh one, nobody blamed.
      this.resend();
      return;
    }
    const kind: FailureKind =
      code === 'ERR_NETLOOM_DEADLINE'
        ? 'upstream-timeout'
        : code === 'ERR_HTTP_BAD_RESPONSE'
          ? 'bad-response'
          : 'upstream-closed';
    this.finish('failed', kind, err);
  }

  // ---- internals ---------------------------------------------------------------------------------------

  private resend(): void {
    this.resends++;
    this.state = CONNECTING;
    this.target.pool.acquire(this, true);
  }

  private endBody(client: UpstreamExchange): void {
    this.state = SENT;
    try {
      client.endBody(this.trailers);
    } catch {
      client.endBody(); // a trailer the codec refuses: the body ends without trailers
    }
    client.setDeadline(Math.min(this.upstream.config.timeouts.firstByte, this.remaining()));
  }

  private remaining(): number {
    return Math.max(1, this.deadlineTotal - this.loop.now());
  }

  /** Stops the mirror on the gateway's side (not the shadow's fault). */
  private giveUp(reason: Error): void {
    const client = this.client;
    this.client = null;
    const was = this.state;
    this.finish('aborted', null);
    if (client !== null) client.abort(reason);
    else if (was === CONNECTING) this.target.pool.withdraw(this);
  }

  private finish(outcome: 'answered' | 'failed' | 'aborted', kind: FailureKind | null, err?: unknown): void {
    if (this.state === DONE) return;
    this.state = DONE;
    this.pending = null;
    this.registry.delete(this);
    const target = this.target;
    target.active--;
    const c = this.counters;
    c.inFlight.add(-1);
    this.ownInFlight.add(-1);
    if (outcome === 'answered') {
      c.answered.add();
      this.upstream.answered(target, this.status);
    } else if (outcome === 'aborted') c.aborted.add();
    else {
      c.failed.add();
      if (kind !== null) this.upstream.failed(target, kind);
      this.loop.log.debug('mirror failed', {
        upstream: this.upstream.name,
        target: target.address,
        error: err,
      });
    }
  }
}
