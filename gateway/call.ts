/**
 * One proxied request through its route's pipeline: the `onRequest` filters, a target from the balancer, a
 * pooled connection, the upstream head (`onUpstreamRequest`), the body streamed up, the response head
 * (`onUpstreamResponse`) and body streamed down (both with backpressure, neither buffered whole), then
 * `onComplete` with the completion record; `onError` when it fails first. Idempotent requests whose body has
 * not started are retried on another target when a connection fails before any response; a pooled
 * connection the upstream closed while idle is retried on a fresh one and does not count against the target.
 */

import type { EventLoop } from '../core/index.ts';
import type {
  BodyConsumer,
  ClientConnection,
  ClientResponse,
  HttpError,
  RawRequestHeaders,
  Request,
  RequestFraming,
  Response,
  ResponseSink,
} from '../protocols/http1/index.ts';
import { acceptFor } from '../protocols/websocket/index.ts';
import { CompletionRecord, type FailureKind } from './completion.ts';
import {
  gatewayChannels,
  type ProxyAttemptMessage,
  type ProxyCompleteMessage,
  type ProxyStartMessage,
} from './diagnostics.ts';
import { GatewayError } from './errors.ts';
import type { FilterInstance, GatewayFailure, RequestContext } from './filter.ts';
import { SKIP_REQUEST } from './hop-by-hop.ts';
import type { MirrorExchange } from './mirror.ts';
import type { PoolError, PoolRequester, UpstreamExchange } from './pool.ts';
import { filteredHead, forwardHead, ResponseFilterError } from './response-head.ts';
import { openTunnel } from './tunnel.ts';

/** Methods whose responses are framed differently (no body, a tunnel): a filter may not switch to or from them. */
const FRAMING_METHODS: ReadonlySet<string> = new Set(['HEAD', 'CONNECT']);

import type { RouteRuntime } from './runtime.ts';
import { epochMicros, parentOf, type SpanTimes } from './span.ts';
import { newRequestId, newSpanId, nextTraceparent } from './tracing.ts';
import { IDEMPOTENT, type Upstream, type UpstreamTarget } from './upstream.ts';
import {
  connectionTokens,
  copyHead,
  type HeaderOverride,
  type HeadInput,
  headAsStrings,
  type PreparedHead,
  prepareHead,
} from './upstream-head.ts';
import type { RelaySummary, WebSocketRelays } from './websocket-relay.ts';

// The call's states.
const FILTERING = 0; // onRequest filters run
const CONNECTING = 1; // waiting for a pooled connection
const SENDING = 2; // request head written, no response head yet
const RECEIVING = 3; // response head forwarded, body on its way down
const DONE = 4;

/** Errors the gateway answers with itself, as JSON. */
export function sendGatewayError(
  res: Response,
  status: number,
  error: string,
  extra: Record<string, string> = {},
): void {
  if (res.headersSent || res.finished) return;
  // Whatever an upstream's head had set (length, cookies) must not leak into our own answer.
  res
    .reset()
    .status(status)
    .header('cache-control', 'no-store')
    .json({ error, status, ...extra });
}

/** The request head handed to the codec as bytes (one per thread: used within `client.request` only). */
const rawHead = new (class implements RawRequestHeaders {
  input: HeadInput | null = null;
  head: PreparedHead | null = null;
  client = '';
  get size(): number {
    return this.head!.size;
  }
  copy(buf: Buffer, p: number): number {
    return copyHead(this.input!, this.head!, this.client, buf, p);
  }
})();

export class ProxyCall implements PoolRequester, ResponseSink, BodyConsumer, RequestContext, HeadInput {
  readonly req: Request;
  readonly res: Response;
  readonly route: RouteRuntime;
  readonly params: Record<string, string> | null;
  readonly path: string;
  readonly loop: EventLoop;
  readonly record: CompletionRecord;
  readonly requestId: string;
  readonly traceparent: string;
  overrides: HeaderOverride[] | null = null;

  private state = FILTERING;
  private upstream: Upstream;
  /** A filter chose the upstream (`useUpstream`), not the route. */
  private movedByFilter = false;
  private key: string | undefined;
  private target: UpstreamTarget | null = null;
  private client: UpstreamExchange | null = null;
  private reused = false;
  private tried: Set<UpstreamTarget> | null = null;
  private attempts = 0;
  private bodyAttached = false;
  private requestDone = false;
  /** The client went away: failures from here on are ours, not the target's. */
  private clientGone = false;
  private deadlineTotal = 0;
  private startedMs = 0;
  /** When the call began, precisely (the loop's clock is coarse): the record's durations and the histograms. */
  private readonly startedPrecise = performance.now();
  private phaseMs = 0;
  private resumeDownstream: (() => void) | null = null;
  /** Streams an HTTP/2 upstream did not process, sent again (twice at most, then a normal failure). */
  private refusals = 0;
  /** A WebSocket upgrade: relayed by these once the upstream switches protocols (null: plain HTTP). */
  private readonly relays: WebSocketRelays | null;
  /** A CONNECT request: once the filters let it through, a tunnel to the upstream instead of a request. */
  private tunnelled = false;
  /** The copy of this request on its way to the route's shadow upstream, or null. */
  private mirror: MirrorExchange | null = null;
  /** The route mirrors this request once its head goes up. */
  private mirrorDue = false;
  /** The request's spans while it runs, when it is sampled (`observability.tracing`). */
  private span: SpanTimes | null = null;

  constructor(
    req: Request,
    res: Response,
    route: RouteRuntime,
    upstream: Upstream,
    params: Record<string, string> | null,
    path: string,
    loop: EventLoop,
    relays: WebSocketRelays | null = null,
  ) {
    this.req = req;
    this.relays = relays;
    this.res = res;
    this.route = route;
    route.use.acquire(); // released in complete(): the version's filters stay open while this runs
    this.params = params;
    this.path = path;
    this.loop = loop;
    this.upstream = upstream; // the route's, or the one its traffic rules chose
    this.startedMs = loop.now();
    this.record = new CompletionRecord(route.name, route.domain, req.method, path, this.startedMs);
    this.record.upstream = this.upstream.name;
    this.key = this.upstream.config.balance === 'consistent_hash' ? this.upstream.hashKey(req) : undefined;
    // '' when the route does not add the field (the client's own, if any, then passes through); the route's
    // flags, not '', tell the cases apart. A route that removes the client's id or trace generates its own.
    const incomingId = route.distrustClientId ? undefined : req.header('x-request-id');
    // An empty id identifies nothing: it counts as absent.
    this.requestId = route.addRequestId ? incomingId || newRequestId() : '';
    const incomingTrace = route.distrustClientTrace ? undefined : req.header('traceparent');
    let traceparent = route.addTraceparent ? nextTraceparent(incomingTrace) : '';
    const tracer = route.tracer;
    if (tracer !== null) {
      const parent = parentOf(incomingTrace);
      const traceId = traceparent.slice(3, 35);
      if (tracer.sampled(parent, traceId)) {
        this.span = {
          traceId,
          serverId: newSpanId(),
          parentId: parent?.spanId ?? '',
          clientId: traceparent.slice(36, 52),
          start: epochMicros(),
          clientStart: 0,
          firstByte: 0,
          client: req.remoteAddress,
        };
      } else if (parent === null) {
        traceparent = `${traceparent.slice(0, 53)}00`; // a new trace we do not sample: the upstream is told
      }
    }
    this.traceparent = traceparent;
    const locals = req.locals;
    if (locals !== undefined) {
      // What the upstream was sent: the proxy's own, else the route's fixed value, else the client's.
      locals.requestId = route.addRequestId ? this.requestId : (route.fixedRequestId ?? incomingId);
      locals.traceparent = route.addTraceparent
        ? this.traceparent
        : (route.fixedTraceparent ?? incomingTrace);
      locals.record = this.record;
    }
    req.onAbort(() => this.downstreamGone());
  }

  // ---- RequestContext -------------------------------------------------------------------------------

  get signal(): AbortSignal {
    return this.req.signal;
  }

  get upstreamName(): string {
    return this.upstream.name;
  }

  useUpstream(name: string): void {
    if (this.state !== FILTERING)
      throw new GatewayError('ERR_GATEWAY_FILTER_UPSTREAM', 'the upstream can only change in onRequest');
    const next = this.route.upstreams.get(name);
    if (next === undefined)
      throw new GatewayError('ERR_GATEWAY_FILTER_UPSTREAM', `no upstream named ${JSON.stringify(name)}`);
    this.upstream = next;
    this.movedByFilter = true;
    this.record.upstream = name;
    this.key = next.config.balance === 'consistent_hash' ? next.hashKey(this.req) : undefined;
  }

  setHeader(name: string, value: string): void {
    this.override(name, value, false);
  }

  appendHeader(name: string, value: string): void {
    this.override(name, value, true);
  }

  removeHeader(name: string): void {
    this.override(name, null, false);
  }

  private override(name: string, value: string | null, append: boolean): void {
    if (this.state >= SENDING)
      throw new GatewayError('ERR_GATEWAY_FILTER_HEADER', 'the upstream request is already sent');
    const lower = name.toLowerCase();
    if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(lower))
      throw new GatewayError('ERR_GATEWAY_FILTER_HEADER', `invalid header name ${JSON.stringify(name)}`);
    if (value !== null && !/^[\t\x20-\x7e\x80-\xff]*$/.test(value))
      throw new GatewayError('ERR_GATEWAY_FILTER_HEADER', `invalid character in the value of ${name}`);
    if (this.route.ownedNames.has(lower))
      throw new GatewayError(
        'ERR_GATEWAY_FILTER_HEADER',
        `${name} is written by the gateway itself, not by filters`,
      );
    if (this.overrides === null) this.overrides = [];
    const list = this.overrides;
    if (!append) for (let i = list.length - 1; i >= 0; i--) if (list[i]!.lower === lower) list.splice(i, 1);
    list.push({ lower, name, value, append });
  }

  respond(status: number, body?: string | object, headers?: Readonly<Record<string, string>>): void {
    const res = this.res;
    if (res.headersSent) return;
    res.status(status);
    for (const [name, value] of Object.entries(headers ?? {})) res.header(name, value);
    if (body === undefined || typeof body === 'string') {
      if (!res.hasHeader('content-type') && body !== undefined)
        res.header('content-type', 'text/plain; charset=utf-8');
      res.end(body ?? '');
    } else res.json(body);
  }

  // ---- the pipeline ---------------------------------------------------------------------------------

  /**
   * Runs a CONNECT request: the filters, then a tunnel to a target (`openTunnel` answers the client); the
   * call completes once the tunnel is asked for.
   */
  startTunnel(): void | Promise<void> {
    this.tunnelled = true;
    return this.start();
  }

  /** Runs the request: filters first (they may answer or go async), then the upstream. */
  start(): void | Promise<void> {
    if (gatewayChannels.proxyStart.hasSubscribers)
      gatewayChannels.proxyStart.publish({ ctx: this, route: this.route.name } satisfies ProxyStartMessage);
    const filters = this.route.onRequest;
    for (let i = 0; i < filters.length; i++) {
      let verdict: boolean | void | Promise<boolean | void>;
      try {
        verdict = filters[i]!.onRequest!(this);
      } catch (err) {
        this.filterFailed(err);
        return;
      }
      if (verdict === false || this.res.headersSent) return this.answeredByFilter();
      if (verdict !== undefined && verdict !== true) return this.continueAsync(verdict, i + 1);
    }
    this.connect();
  }

  private async continueAsync(pending: Promise<boolean | void>, from: number): Promise<void> {
    const filters = this.route.onRequest;
    try {
      if ((await pending) === false || this.res.headersSent) return this.answeredByFilter();
      for (let i = from; i < filters.length; i++) {
        if (this.state === DONE) return;
        if ((await filters[i]!.onRequest!(this)) === false || this.res.headersSent)
          return this.answeredByFilter();
      }
    } catch (err) {
      this.filterFailed(err);
      return;
    }
    if (this.state === DONE) return; // the client left while a filter waited
    this.connect();
  }

  private answeredByFilter(): void {
    if (this.state === DONE) return;
    this.state = DONE;
    this.record.answeredBy = 'filter';
    if (!this.res.finished) this.res.end(); // a filter that sent the head and stopped
    this.complete();
  }

  private filterFailed(err: unknown): void {
    this.loop.log.error('gateway filter failed', { route: this.route.name, error: err });
    this.fail('filter-error', 500, 'internal error');
  }

  private connect(): void {
    if (this.relays !== null && this.upstream.config.protocol === 'http2') {
      // The dispatcher refuses it for the route's upstream before the filters; this is for one a filter
      // chose. (A CONNECT tunnel is TCP: any upstream's target takes it.)
      this.fail('unsupported', 501, 'WebSocket to an HTTP/2 upstream is not supported');
      return;
    }
    if (this.tunnelled) {
      this.state = CONNECTING;
      openTunnel(this.req, this.res, this.route, this.upstream, this.loop, (failure) =>
        this.tunnelSettled(failure),
      );
      return;
    }
    this.state = CONNECTING;
    this.deadlineTotal = this.startedMs + this.upstream.config.timeouts.total;
    if (this.loop.now() >= this.deadlineTotal) {
      // The filters used up the whole budget (a slow auth call, an injected delay): nothing goes up.
      this.fail('upstream-timeout', 504, 'upstream timeout');
      return;
    }
    // Mirrored once the live request's head is on its way (onConnection): a request the gateway could not
    // send is not copied, and a mirror never takes a connection the live request waits for.
    this.mirrorDue = this.route.mirror !== null && this.relays === null;
    this.attempt(0, '');
  }

  /** Tries a target; `lastStatus`/`lastError` describe the previous attempt's failure (0 if none). */
  private attempt(lastStatus: number, lastError: string, lastKind?: FailureKind, fresh = false): void {
    const target = this.target !== null && fresh ? this.target : this.upstream.pick(this.key, this.tried);
    if (target === null) {
      // With nothing left to retry on, the answer is the last failure's (504 stays 504).
      if (lastStatus === 0) this.fail('no-healthy-target', 503, 'no healthy upstream');
      else this.fail(lastKind ?? 'connect-failed', lastStatus, lastError);
      return;
    }
    if (!fresh) {
      // A request sent again on a fresh connection (its pooled one was stale) uses up no retry.
      if (this.attempts > 0) {
        // Charged only for a retry that goes out (a target was found for it).
        if (!this.withinRetryBudget()) {
          this.fail(lastKind ?? 'connect-failed', lastStatus, lastError);
          return;
        }
        this.record.retries++;
      } else this.upstream.retryBudget?.request(this.loop.now());
      this.attempts++;
    }
    this.target = target;
    this.record.target = target.address;
    if (this.span !== null && this.span.clientStart === 0) this.span.clientStart = epochMicros();
    if (gatewayChannels.proxyAttempt.hasSubscribers)
      gatewayChannels.proxyAttempt.publish({
        ctx: this,
        upstream: this.upstream.name,
        target: target.address,
        attempt: this.attempts,
      } satisfies ProxyAttemptMessage);
    target.active++;
    target.requests++;
    this.state = CONNECTING;
    this.phaseMs = this.loop.now();
    target.pool.acquire(this, fresh);
  }

  private canRetry(): boolean {
    return (
      this.state !== DONE &&
      this.state !== RECEIVING &&
      this.attempts <= this.upstream.config.retries &&
      IDEMPOTENT.has(this.req.method) &&
      !(this.bodyAttached && this.req.hasBody)
    );
  }

  private withinRetryBudget(): boolean {
    const budget = this.upstream.retryBudget;
    if (budget === null || budget.retry(this.loop.now())) return true;
    this.record.retryDenied = true;
    return false;
  }

  /** The attempt failed before a response: retry elsewhere if allowed, else answer `status`. */
  private failAttempt(kind: FailureKind, status: number, message: string): void {
    const target = this.target!;
    target.active--;
    if (!this.clientGone) this.upstream.failed(target, kind);
    this.client = null;
    if (this.state === DONE) return;
    if (this.canRetry()) {
      if (this.tried === null) this.tried = new Set();
      this.tried.add(target);
      this.attempt(status, message, kind);
      return;
    }
    this.fail(kind, status, message);
  }

  // ---- PoolRequester ---------------------------------------------------------------------------------

  onConnection(client: UpstreamExchange, reused: boolean): void {
    if (this.state === DONE) {
      this.target!.active--;
      this.target!.pool.release(client);
      return;
    }
    const now = this.loop.now();
    this.record.connectMs = now - this.phaseMs;
    this.client = client;
    this.reused = reused;
    // The first-byte timeout starts once the request is sent whole; an upload runs against the total.
    client.setDeadline(this.req.hasBody ? this.remaining() : this.firstByteDeadline());
    client.poolData = this;
    client.onWritable = resumeUpstreamWrites;
    this.state = SENDING;
    if (!this.sendHead(client)) return;
    if (this.mirrorDue) {
      this.mirrorDue = false;
      this.mirror = this.route.mirror!.start(this, this.req.method, this.upstreamTarget());
      this.record.mirrored = this.mirror !== null;
    }
    if (this.req.hasBody) {
      this.bodyAttached = true;
      this.req.pipe(this);
    } else {
      this.requestDone = true;
    }
  }

  /** The request-target sent upstream: the path after the route's rewrite, and the query. */
  private upstreamTarget(): string {
    const path = this.route.rewrite === null ? this.path : this.route.rewrite(this.path);
    const query = this.req.query;
    return query === '' ? path : `${path}?${query}`;
  }

  /** Writes the upstream request head; false (the call failed) when a filter's change could not be sent. */
  private sendHead(client: UpstreamExchange): boolean {
    const req = this.req;
    const route = this.route;
    const target = this.target!;
    const address = req.remoteAddress;
    const targetText = this.upstreamTarget();
    const upgrade = this.relays === null ? undefined : 'websocket';
    const framing: RequestFraming =
      upgrade !== undefined
        ? 'none'
        : req.contentLength >= 0
          ? req.contentLength
          : req.hasBody
            ? 'chunked'
            : 'none';
    const head = prepareHead(this, target.host, address);
    try {
      if (route.onUpstreamRequest.length === 0) {
        rawHead.input = this;
        rawHead.head = head;
        rawHead.client = address;
        client.request(
          { method: req.method, target: targetText, host: head.host, raw: rawHead, framing, upgrade },
          this,
        );
      } else {
        const strings = headAsStrings(this, head, address, req.method, targetText);
        for (const f of route.onUpstreamRequest) f.onUpstreamRequest!(this, strings);
        // HEAD and CONNECT change how the response is framed: the client's answer would not match its request.
        const method = strings.method;
        if (method !== req.method && (FRAMING_METHODS.has(method) || FRAMING_METHODS.has(req.method)))
          throw new Error(`a filter may not change the method ${req.method} to ${method}`);
        // Framing, Host and hop-by-hop fields are the gateway's: a filter's own would duplicate them.
        const headers = strings.headers.filter(([name]) => {
          const ok = !SKIP_REQUEST.has(name.toLowerCase());
          if (!ok)
            this.loop.log.warn('filter header dropped (the gateway writes it)', { route: route.name, name });
          return ok;
        });
        client.request(
          { method: strings.method, target: strings.target, host: head.host, headers, framing, upgrade },
          this,
        );
      }
    } catch (err) {
      rawHead.input = rawHead.head = null;
      this.loop.log.error('upstream request not sent', { route: route.name, error: err });
      this.client = null;
      target.active--;
      target.pool.release(client);
      this.fail('filter-error', 500, 'internal error');
      return false;
    }
    rawHead.input = rawHead.head = null;
    return true;
  }

  onPoolError(err: PoolError): void {
    if (err.kind === 'closed' && this.state === CONNECTING) {
      // The target left while this waited in its pool's queue (a reload, discovery): nothing was sent,
      // so another target takes it, whatever the method, and it uses up no retry. Not the target's failure.
      const target = this.target!;
      target.active--;
      if (this.tried === null) this.tried = new Set();
      this.tried.add(target);
      // The targets in force (a newer version's, when one replaced this request's).
      let upstream = this.upstream;
      while (upstream.successor !== null) upstream = upstream.successor;
      const next = upstream.pick(this.key, this.tried);
      if (next === null) {
        this.fail('no-healthy-target', 503, 'no healthy upstream');
        return;
      }
      this.target = next;
      this.record.target = next.address;
      next.active++;
      next.requests++;
      this.phaseMs = this.loop.now();
      next.pool.acquire(this);
      return;
    }
    if (err.kind === 'queue' || err.kind === 'closed')
      this.failAttempt('pool-exhausted', 503, 'upstream connection pool exhausted');
    else if (err.kind === 'connect-timeout')
      this.failAttempt('connect-timeout', 504, 'upstream connect timeout');
    else this.failAttempt('connect-failed', 502, 'upstream connect failed');
  }

  // ---- BodyConsumer: the client's body, upstream ---------------------------------------------------------

  data(chunk: Buffer): boolean {
    this.record.bytesIn += chunk.length;
    this.mirror?.data(chunk);
    const client = this.client;
    if (client === null || client.gone) return true;
    // Past the high-water mark, flush; stop reading the client only if the upstream really is behind
    // (whenWritable then promises an onWritable, which resumes the body).
    if (!client.writeBody(chunk) && !client.whenWritable()) return false;
    return true;
  }

  end(trailers: readonly [string, string][]): void {
    this.requestDone = true;
    const client = this.client;
    const mirror = this.mirror;
    if (client === null && mirror === null) return;
    // Trailer fields the proxy would not forward as headers (framing, Host, the fields it writes, the route's
    // removals) are dropped too: an upstream that merges trailers into the header must not see them.
    const skip = this.route.requestSkip;
    const kept: [string, string][] = [];
    for (const pair of trailers) {
      const lower = pair[0].toLowerCase();
      if (!skip.get(lower.length)?.includes(lower)) kept.push(pair);
    }
    mirror?.end(kept);
    if (client === null) return;
    if (this.state === SENDING) client.setDeadline(this.firstByteDeadline());
    try {
      client.endBody(kept);
    } catch (err) {
      // A trailer the HTTP/1.1 codec refuses (an HTTP/2 client's may hold bytes HTTP/1.1 cannot carry):
      // the body ends without trailers rather than stay open.
      this.loop.log.warn('request trailers dropped', { route: this.route.name, error: err });
      client.endBody();
    }
  }

  error(_err: Error): void {
    // The client's body broke off: the upstream request cannot complete, and it is not the target's fault.
    this.clientGone = true;
    this.mirror?.abandon();
    this.abandon('client-gone');
  }

  private remaining(): number {
    return Math.max(1, this.deadlineTotal - this.loop.now());
  }

  private firstByteDeadline(): number {
    return Math.min(this.upstream.config.timeouts.firstByte, this.remaining());
  }

  /** The upstream drained below its low-water mark: read the client's body again. */
  upstreamWritable(): void {
    // Once answered, the connection's request object may already serve the next request: leave it alone.
    if (!this.requestDone && this.state !== DONE) this.req.resumeBody();
  }

  // ---- ResponseSink: the upstream's response, downstream -------------------------------------------------

  onHead(response: ClientResponse): void {
    this.state = RECEIVING;
    this.record.firstByteMs = performance.now() - this.startedPrecise;
    if (this.span !== null) this.span.firstByte = epochMicros();
    const client = this.client!;
    client.setDeadline(this.remaining());
    let answered: boolean;
    try {
      answered = forwardHead(this, this.route, response, this.res, this.requestId);
    } catch (err) {
      this.client = null;
      client.abort(err as Error);
      this.target!.active--;
      if (err instanceof ResponseFilterError) {
        // The user's filter failed: the upstream answered well and is not blamed.
        this.upstream.answered(this.target!, response.status);
        this.filterFailed(err.cause);
        return;
      }
      // An upstream head we cannot forward (a status we do not speak...): a bad gateway, not a crash.
      this.loop.log.warn('upstream response not forwarded', { route: this.route.name, error: err });
      this.upstream.failed(this.target!, 'bad-response');
      this.fail('bad-response', 502, 'invalid response from upstream');
      return;
    }
    if (answered) {
      // A response filter answered instead: the upstream's body is not wanted (its connection goes).
      this.client = null;
      client.abort(new Error('answered by an onUpstreamResponse filter'));
      this.target!.active--;
      this.upstream.answered(this.target!, response.status);
      this.answeredByFilter();
    }
  }

  /** The upstream accepted the WebSocket: the client gets its 101, then the two connections are relayed. */
  onUpgrade(response: ClientResponse): void {
    const client = this.client as ClientConnection;
    const target = this.target!;
    const relays = this.relays!;
    this.client = null;
    this.state = RECEIVING;
    this.record.firstByteMs = performance.now() - this.startedPrecise;
    const conn = client.conn;
    conn.setDeadline(0);
    // The upstream's connection still belongs to its pool's handler: destroyed, the pool counts it gone.
    const drop = () => {
      target.active--;
      conn.destroy();
    };
    const key = this.req.header('sec-websocket-key') ?? '';
    if (
      !connectionTokens(response.header('upgrade'))?.has('websocket') ||
      response.header('sec-websocket-accept') !== acceptFor(key)
    ) {
      drop();
      this.upstream.failed(target, 'bad-response');
      this.loop.log.warn('upstream WebSocket handshake refused', {
        route: this.route.name,
        target: target.address,
      });
      this.fail('bad-response', 502, 'invalid WebSocket handshake from upstream');
      return;
    }
    let head: ReturnType<typeof filteredHead>;
    try {
      head = filteredHead(this, this.route, response, this.res, this.requestId);
    } catch (err) {
      drop();
      this.upstream.answered(target, 101);
      this.filterFailed((err as ResponseFilterError).cause);
      return;
    }
    this.upstream.answered(target, 101);
    if (head === null || head.status !== 101) {
      // A filter answered (or turned the 101 into another status): the upstream's WebSocket is not wanted.
      drop();
      if (head !== null) this.respond(head.status, '', Object.fromEntries(head.headers));
      this.answeredByFilter();
      return;
    }
    const headers: Record<string, string[]> = Object.create(null); // a field may be named __proto__
    for (const [name, value] of head.headers) {
      const values = headers[name];
      if (values === undefined) headers[name] = [value];
      else values.push(value);
    }
    // The protocol switched to is the one asked of the upstream, whatever else the client offered.
    headers.upgrade = ['websocket'];
    const route = this.route;
    try {
      relays.accept(this.res, headers, {
        route: route.name,
        target: target.address,
        upstreamName: this.upstream.name,
        movedByFilter: this.movedByFilter,
        limits: route.config.websocket,
        extensions: response.header('sec-websocket-extensions') !== undefined,
        upstream: conn,
        onEnd: (summary) => this.relayEnded(target, summary),
      });
    } catch (err) {
      drop(); // still the pool's: it counts the connection gone
      this.loop.log.warn('WebSocket upgrade not forwarded', { route: route.name, error: err });
      this.fail('bad-response', 502, 'invalid response from upstream');
      return;
    }
    // Relayed now: the connection no longer counts in its pool.
    target.pool.detach(client);
    this.state = DONE;
    this.record.answeredBy = 'upstream';
    this.complete();
  }

  /** The tunnel stands (null) or failed: the call completes with that outcome. */
  private tunnelSettled(failure: FailureKind | null): void {
    if (this.state === DONE) return; // the client left first (abandon completed the call)
    this.state = DONE;
    if (failure === null) this.record.answeredBy = 'upstream';
    else {
      this.record.error = failure;
      this.record.answeredBy = failure === 'client-gone' ? 'nobody' : 'gateway';
    }
    this.complete();
  }

  /** A relayed WebSocket ended: its target has one connection less. */
  private relayEnded(target: UpstreamTarget, summary: RelaySummary): void {
    target.active--;
    // The access record went out with the 101; with access logs on, the relay's end is logged as well.
    if (this.relays!.accessLog) this.loop.log.info('websocket closed', { ...summary });
  }

  onBody(chunk: Buffer): boolean {
    if (this.state === DONE) return true;
    this.record.bytesOut += chunk.length;
    if (!this.res.write(chunk)) {
      if (this.res.closed) return true; // the abort listener ends the call
      this.resumeDownstream ??= () => this.client?.resumeResponse();
      this.res.drain().then(this.resumeDownstream, () => {});
      return false; // the client is slower than the upstream: stop reading the upstream
    }
    return true;
  }

  onEnd(trailers: readonly [string, string][]): void {
    const target = this.target!;
    const client = this.client!;
    target.active--;
    this.client = null;
    if (!this.requestDone) client.reusable = false; // it answered before reading our whole body
    if (this.state === DONE) return;
    this.state = DONE;
    this.upstream.answered(target, this.res.statusCode);
    this.record.answeredBy = 'upstream';
    // Trailers pass back (gRPC's status is one), but not the fields the proxy would not forward as headers.
    if (trailers.length > 0) {
      const skip = this.route.responseSkip;
      for (const [name, value] of trailers) {
        const lower = name.toLowerCase();
        if (skip.get(lower.length)?.includes(lower)) continue;
        try {
          this.res.trailer(name, value);
        } catch {
          // A field the downstream codec refuses (bad characters) is dropped, not the response.
        }
      }
    }
    try {
      this.res.end();
    } catch (err) {
      // The downstream refused the end (a body shorter than its declared length): the response is cut,
      // the call still completes (its filters and its route's hold are released).
      this.loop.log.warn('response not completed', { route: this.route.name, error: err });
    }
    this.complete();
  }

  onError(err: Error): void {
    if (this.client === null || this.state === DONE) return;
    const code = (err as HttpError & { code?: string }).code;
    if (code === 'ERR_NETLOOM_DEADLINE') {
      this.failAttempt('upstream-timeout', 504, 'upstream timeout');
      return;
    }
    const client = this.client;
    if (code === 'ERR_HTTP2_REFUSED' && !client.answered && this.refusals++ < 2) {
      // The upstream did not process the stream (GOAWAY before it, REFUSED_STREAM): not the target's
      // failure, and safe to send again on a new connection when no body has gone out.
      this.target!.active--;
      this.client = null;
      if (!(this.bodyAttached && this.req.hasBody)) {
        this.attempt(502, 'upstream connection failed', 'upstream-closed', true);
      } else {
        this.fail('upstream-closed', 502, 'upstream connection failed');
      }
      return;
    }
    if (
      this.reused &&
      !client.answered &&
      this.state === SENDING &&
      code !== 'ERR_HTTP_BAD_RESPONSE' &&
      code !== 'ERR_HTTP2_STREAM_RESET' // a stream the upstream reset was seen by it: not a stale connection
    ) {
      // A pooled connection the upstream closed while it was idle (its keep-alive timeout raced our request):
      // not the target's failure. The request goes again on a fresh connection to the same target if it can
      // (idempotent, no body started); otherwise it fails, counted against nobody.
      this.target!.active--;
      this.client = null;
      if (!this.bodyAttached && IDEMPOTENT.has(this.req.method)) {
        this.attempt(502, 'upstream connection failed', 'upstream-closed', true);
      } else {
        this.fail('upstream-closed', 502, 'upstream connection failed');
      }
      return;
    }
    this.failAttempt(
      code === 'ERR_HTTP_BAD_RESPONSE' ? 'bad-response' : 'upstream-closed',
      502,
      code === 'ERR_HTTP_BAD_RESPONSE' ? 'invalid response from upstream' : 'upstream connection failed',
    );
  }

  // ---- the end ---------------------------------------------------------------------------------------

  /** The request failed before an answer reached the client: `onError` filters, then our own answer. */
  private fail(kind: FailureKind, status: number, message: string): void {
    if (this.state === DONE) return;
    this.state = DONE;
    const record = this.record;
    record.error = kind;
    const res = this.res;
    if (!this.clientGone && !res.headersSent) {
      const failure: GatewayFailure = { kind, status, message };
      for (const f of this.route.onError) {
        try {
          if (f.onError!(this, failure) === false || res.headersSent) {
            record.answeredBy = 'filter';
            if (!res.finished) res.end();
            this.complete();
            return;
          }
        } catch (err) {
          this.loop.log.error('gateway filter onError failed', { route: this.route.name, error: err });
        }
      }
    }
    if (!res.headersSent) {
      sendGatewayError(res, status, message, { upstream: this.upstream.name, route: this.route.name });
      record.answeredBy = 'gateway';
    } else if (!res.finished) {
      res.destroy(new Error(`upstream failed mid-response: ${message}`));
    }
    this.complete();
  }

  /** The call ends without an answer to send (the client is gone). */
  private abandon(kind: FailureKind): void {
    const was = this.state;
    if (was === DONE) return;
    this.state = DONE;
    this.record.error = kind;
    const client = this.client;
    this.client = null;
    if (client !== null) {
      this.target!.active--;
      client.abort(new Error('client went away'));
    } else if (was === CONNECTING && this.target !== null && this.target.pool.withdraw(this)) {
      // It was waiting in the pool's queue: out of it now, so no connection is handed to a dead request.
      this.target.active--;
    }
    this.complete();
  }

  private downstreamGone(): void {
    this.clientGone = true;
    this.abandon('client-gone');
  }

  /** The completion record is final: `onComplete` filters read it. */
  private complete(): void {
    // A body still coming will not reach the mirror (nothing reads it on for this call).
    if (!this.requestDone) this.mirror?.abandon();
    const record = this.record;
    record.totalMs = performance.now() - this.startedPrecise;
    const res = this.res;
    record.status = res.headersSent ? res.statusCode : 0;
    this.route.metrics.complete(record, this.upstream);
    if (this.span !== null) this.route.tracer!.record(this.span, record);
    if (gatewayChannels.proxyComplete.hasSubscribers)
      gatewayChannels.proxyComplete.publish({ ctx: this, record } satisfies ProxyCompleteMessage);
    const filters: readonly FilterInstance[] = this.route.onComplete;
    for (const f of filters) {
      try {
        f.onComplete!(this, record);
      } catch (err) {
        this.loop.log.error('gateway filter onComplete failed', { route: this.route.name, error: err });
      }
    }
    this.route.use.release();
  }
}

function resumeUpstreamWrites(client: UpstreamExchange): void {
  (client.poolData as ProxyCall | undefined)?.upstreamWritable();
}
