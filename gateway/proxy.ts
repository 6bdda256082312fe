import type {
  BodyConsumer,
  ClientConnection,
  ClientResponse,
  HttpError,
  RawHeaders,
  Request,
  Response,
  ResponseSink,
} from '../protocols/http1/index.ts';
import type { FilterContext, ResponseHeaders } from './filter.ts';
import { SKIP_RESPONSE } from './hop-by-hop.ts';
import type { PoolError, PoolRequester } from './pool.ts';
import type { RouteRuntime } from './runtime.ts';
import { newRequestId, nextTraceparent } from './tracing.ts';
import type { Upstream, UpstreamTarget } from './upstream.ts';

/** Methods that may be retried on another target (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

function connectionTokens(value: string | undefined): Set<string> | null {
  if (value === undefined) return null;
  // The usual value names no field: answer without splitting or allocating.
  if (value.length === 10 && value.toLowerCase() === 'keep-alive') return null;
  if (value.length === 5 && value.toLowerCase() === 'close') return null;
  const tokens = new Set<string>();
  for (const t of value.split(',')) {
    const v = t.trim().toLowerCase();
    if (v !== '' && v !== 'close' && v !== 'keep-alive') tokens.add(v);
  }
  return tokens.size === 0 ? null : tokens;
}

/**
 * Whether `host` is host[:port] (reg-name, IPv4 or bracketed IPv6), RFC 9110 §7.2: the only Host a gateway
 * passes on. A character loop: it runs on every request, where the equivalent regular expression costs twice.
 */
export function isValidHost(host: string): boolean {
  const len = host.length;
  let i = 0;
  if (len > 0 && host.charCodeAt(0) === 0x5b) {
    // [IPv6]
    i = 1;
    while (i < len) {
      const c = host.charCodeAt(i);
      if (!((c >= 0x30 && c <= 0x3a) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66) || c === 0x2e))
        break;
      i++;
    }
    if (i === 1 || i >= len || host.charCodeAt(i) !== 0x5d) return false;
    i++;
  } else {
    while (i < len) {
      const c = host.charCodeAt(i);
      const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
      if (!alnum && c !== 0x2e && c !== 0x5f && c !== 0x2d) break;
      i++;
    }
    if (i === 0) return false;
  }
  if (i === len) return true;
  if (host.charCodeAt(i) !== 0x3a) return false;
  const digits = len - i - 1;
  if (digits < 1 || digits > 5) return false;
  for (let k = i + 1; k < len; k++) {
    const c = host.charCodeAt(k);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

const FILTER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FILTER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Bytes of the fixed text in the proxy's own request lines (names, separators, CRLFs), rounded up. */
const TAIL_FIXED = 192;

/** Errors the proxy answers with itself, as JSON. */
export function sendGatewayError(
  res: Response,
  status: number,
  error: string,
  extra: Record<string, string> = {},
): void {
  if (res.headersSent) return;
  // Whatever an upstream's head had set (length, cookies) must not leak into our own answer.
  res
    .reset()
    .status(status)
    .header('cache-control', 'no-store')
    .json({ error, status, ...extra });
}

/**
 * One proxied request: picks a target, borrows a pooled connection, streams the request body up and the
 * response body down (both with backpressure, neither buffered whole), and retries an idempotent request
 * whose body has not started on another target when a connection fails before any response.
 */
export class ProxyCall implements PoolRequester, ResponseSink, BodyConsumer, RawHeaders {
  private readonly ctx: FilterContext;
  private readonly req: Request;
  private readonly res: Response;
  private readonly route: RouteRuntime;
  private readonly upstream: Upstream;
  private readonly key: string | undefined;
  private readonly requestId: string;
  private readonly traceparent: string;
  private target: UpstreamTarget | null = null;
  private client: ClientConnection | null = null;
  private tried: Set<UpstreamTarget> | null = null;
  private attempts = 0;
  private bodyAttached = false;
  private requestDone = false;
  private chunkedUp = false;
  private responseStarted = false;
  private finished = false;
  /** The client went away: failures from here on are ours, not the target's. */
  private clientGone = false;
  private deadlineTotal = 0;
  private resumeDownstream: (() => void) | null = null;

  constructor(ctx: FilterContext) {
    this.ctx = ctx;
    this.req = ctx.req;
    this.res = ctx.res;
    this.route = ctx.route;
    this.upstream = ctx.route.upstream;
    this.key =
      this.upstream.config.balance === 'consistent_hash' ? this.upstream.hashKey(this.req) : undefined;
    // '' when the route does not add the field (the client's own, if any, then passes through); the route's
    // flags, not '', tell the cases apart. A route that removes the client's id or trace generates its own.
    const route = ctx.route;
    const locals = this.req.locals;
    const incomingId = route.distrustClientId ? undefined : this.req.header('x-request-id');
    // An empty id identifies nothing: it counts as absent.
    this.requestId = route.addRequestId ? incomingId || newRequestId() : '';
    const incomingTrace = route.distrustClientTrace ? undefined : this.req.header('traceparent');
    this.traceparent = route.addTraceparent ? nextTraceparent(incomingTrace) : '';
    if (locals !== undefined) {
      // What the upstream was sent: the proxy's own, else the route's fixed value, else the client's.
      locals.requestId = route.addRequestId ? this.requestId : (route.fixedRequestId ?? incomingId);
      locals.traceparent = route.addTraceparent
        ? this.traceparent
        : (route.fixedTraceparent ?? incomingTrace);
    }
    this.req.onAbort(() => this.downstreamGone());
  }

  start(): void {
    this.deadlineTotal = this.ctx.loop.now() + this.upstream.config.timeouts.total;
    this.attempt(0, '');
  }

  /** Tries a target; `lastStatus`/`lastError` describe the previous attempt's failure (0 if none). */
  private attempt(lastStatus: number, lastError: string): void {
    const target = this.upstream.pick(this.key, this.tried);
    if (target === null) {
      this.finished = true;
      const extra = { upstream: this.upstream.name, route: this.route.name };
      // With nothing left to retry on, the answer is the last failure's (504 stays 504).
      if (lastStatus === 0) sendGatewayError(this.res, 503, 'no healthy upstream', extra);
      else sendGatewayError(this.res, lastStatus, lastError, extra);
      return;
    }
    this.attempts++;
    this.target = target;
    target.active++;
    target.requests++;
    target.pool.acquire(this);
  }

  private canRetry(): boolean {
    return (
      !this.finished &&
      !this.responseStarted &&
      this.attempts <= this.upstream.config.retries &&
      IDEMPOTENT.has(this.req.method) &&
      !(this.bodyAttached && this.req.hasBody)
    );
  }

  /** The target failed before a response: retry elsewhere if allowed, else answer `status`. */
  private failAttempt(status: number, message: string, countsAgainstTarget: boolean): void {
    const target = this.target!;
    target.active--;
    if (countsAgainstTarget && !this.clientGone) this.upstream.failed(target);
    this.client = null;
    if (this.finished) return;
    if (this.canRetry()) {
      if (this.tried === null) this.tried = new Set();
      this.tried.add(target);
      this.attempt(status, message);
      return;
    }
    this.finished = true;
    if (!this.res.headersSent) {
      sendGatewayError(this.res, status, message, { upstream: this.upstream.name, route: this.route.name });
    } else {
      this.res.destroy(new Error(`upstream failed mid-response: ${message}`));
    }
  }

  // ---- PoolRequester -------------------------------------------------------------------------------

  onConnection(client: ClientConnection): void {
    if (this.finished) {
      this.target!.active--;
      this.target!.pool.release(client);
      return;
    }
    this.client = client;
    const conn = client.conn;
    // The first-byte timeout starts once the request is sent whole; an upload runs against the total.
    conn.setDeadline(this.req.hasBody ? this.remaining() : this.firstByteDeadline());
    client.poolData = this;
    client.onWritable = resumeUpstreamWrites;
    this.writeRequestHead(conn, this.target!);
    client.begin(this.req.method, this);
    if (this.req.hasBody) {
      this.bodyAttached = true;
      this.req.pipe(this);
    } else {
      this.requestDone = true;
    }
  }

  onPoolError(err: PoolError): void {
    if (err.kind === 'queue') this.failAttempt(503, 'upstream connection pool exhausted', false);
    else if (err.kind === 'connect-timeout') this.failAttempt(504, 'upstream connect timeout', true);
    else this.failAttempt(502, 'upstream connect failed', true);
  }

  /**
   * Writes the upstream request head straight into the connection's staging buffer: the client's header
   * lines are copied as bytes (names compared in place), and only the few fields the proxy rewrites
   * (Host, X-Forwarded-For, Forwarded) are decoded.
   */
  private writeRequestHead(conn: ClientConnection['conn'], target: UpstreamTarget): void {
    const req = this.req;
    const route = this.route;
    let path = req.path;
    if (route.rewrite !== null) path = route.rewrite(path);
    const query = req.query;
    let host: string | undefined;
    let xff: string | undefined;
    let forwarded: string | undefined;
    const connection = req.header('connection');
    const listed = connection === undefined ? null : connectionTokens(connection);
    const count = req.headerCount;
    let bound = 1024 + req.method.length + path.length + query.length;
    for (let k = 0; k < count; k++) bound += req.fieldSize(k);
    const skip = route.requestSkip;
    // Decide which client fields go up before reserving (decoding the special ones on the way).
    const keep = this.keepScratch(count);
    for (let k = 0; k < count; k++) {
      keep[k] = 1;
      const candidates = skip.get(req.fieldNameLength(k));
      if (candidates !== undefined) {
        let hit = '';
        for (const name of candidates) {
          if (req.fieldNameIs(k, name)) {
            hit = name;
            break;
          }
        }
        if (hit !== '') {
          keep[k] = 0;
          // A route that removes a forwarding field does not trust the client's: the proxy starts it afresh.
          if (hit === 'host') host = req.fieldValue(k);
          else if (hit === 'x-forwarded-for' && !route.requestRemove.has(hit))
            xff = xff === undefined ? req.fieldValue(k) : `${xff}, ${req.fieldValue(k)}`;
          else if (hit === 'forwarded' && !route.requestRemove.has(hit))
            forwarded = forwarded === undefined ? req.fieldValue(k) : `${forwarded}, ${req.fieldValue(k)}`;
          continue;
        }
      }
      if (listed?.has(req.fieldName(k).toLowerCase())) keep[k] = 0;
    }
    const client = req.remoteAddress;
    const hostOut = route.preserveHost && host !== undefined ? host : target.address;
    // Rare lines (route additions, filter headers, framing) as one string; the usual ones are written piecewise.
    let extra = '';
    for (const [name, value] of route.requestAdd) extra += `${name}: ${value}\r\n`;
    for (const [name, value] of this.ctx.upstreamHeaders) {
      // Filters are code, but a CR or LF in what they add would split the upstream request: drop it.
      if (FILTER_NAME.test(name) && FILTER_VALUE.test(value)) extra += `${name}: ${value}\r\n`;
      else
        this.ctx.loop.log.warn('filter header dropped (invalid name or value)', { route: route.name, name });
    }
    if (req.contentLength >= 0) {
      extra += `content-length: ${req.contentLength}\r\n`;
    } else if (req.hasBody) {
      extra += 'transfer-encoding: chunked\r\n';
      this.chunkedUp = true;
    }
    bound +=
      TAIL_FIXED +
      hostOut.length +
      2 * client.length +
      (xff?.length ?? 0) +
      (forwarded?.length ?? 0) +
      2 * (host?.length ?? 0) +
      this.requestId.length +
      this.traceparent.length +
      extra.length;
    const buf = conn.reserve(bound);
    let p = conn.reservedAt;
    p = putText(buf, p, req.method);
    buf[p++] = 0x20;
    p = putText(buf, p, path);
    if (query !== '') {
      buf[p++] = 0x3f;
      p = putText(buf, p, query);
    }
    p = putText(buf, p, ' HTTP/1.1\r\n');
    for (let k = 0; k < count; k++) if (keep[k] === 1) p = req.copyField(k, buf, p);
    p = putText(buf, p, 'host: ');
    p = putText(buf, p, hostOut);
    p = putText(buf, p, '\r\n');
    if (route.addForwarded) p = this.putForwarded(buf, p, client, xff, forwarded, host);
    if (route.addRequestId) {
      p = putText(buf, p, 'x-request-id: ');
      p = putText(buf, p, this.requestId);
      p = putText(buf, p, '\r\n');
    }
    if (route.addTraceparent) {
      p = putText(buf, p, 'traceparent: ');
      p = putText(buf, p, this.traceparent);
      p = putText(buf, p, '\r\n');
    }
    p = putText(buf, p, extra);
    buf[p++] = 0x0d;
    buf[p++] = 0x0a;
    conn.commit(p);
  }

  /** X-Forwarded-For/-Proto/-Host and Forwarded, extending what the client sent. */
  private putForwarded(
    buf: Buffer,
    p: number,
    client: string,
    xff: string | undefined,
    forwarded: string | undefined,
    host: string | undefined,
  ): number {
    p = putText(buf, p, 'x-forwarded-for: ');
    if (xff !== undefined) {
      p = putText(buf, p, xff);
      p = putText(buf, p, ', ');
    }
    p = putText(buf, p, client);
    p = putText(buf, p, '\r\nx-forwarded-proto: http\r\n');
    if (host !== undefined) {
      p = putText(buf, p, 'x-forwarded-host: ');
      p = putText(buf, p, host);
      p = putText(buf, p, '\r\n');
    }
    p = putText(buf, p, 'forwarded: ');
    if (forwarded !== undefined) {
      p = putText(buf, p, forwarded);
      p = putText(buf, p, ', ');
    }
    p = putText(buf, p, 'for=');
    // `Forwarded` node syntax (RFC 7239): IPv6 addresses are quoted and bracketed.
    if (client.includes(':')) {
      p = putText(buf, p, '"[');
      p = putText(buf, p, client);
      p = putText(buf, p, ']"');
    } else {
      p = putText(buf, p, client);
    }
    p = putText(buf, p, ';proto=http');
    // Only a well-formed host goes into Forwarded (a quote in it could forge a node the upstream trusts).
    if (host !== undefined && isValidHost(host)) {
      p = putText(buf, p, ';host="');
      p = putText(buf, p, host);
      buf[p++] = 0x22;
    }
    buf[p++] = 0x0d;
    buf[p++] = 0x0a;
    return p;
  }

  private keepScratch(n: number): Uint8Array {
    if (keepFlags.length < n) keepFlags = new Uint8Array(Math.max(n, keepFlags.length * 2));
    return keepFlags;
  }

  // ---- BodyConsumer: the client's body, upstream ---------------------------------------------------------

  data(chunk: Buffer): boolean {
    const conn = this.client?.conn;
    if (conn === undefined || conn.closed) return true;
    if (this.chunkedUp) {
      conn.writeLatin1(`${chunk.length.toString(16)}\r\n`);
      conn.write(chunk);
      conn.writeLatin1('\r\n');
    } else {
      conn.write(chunk);
    }
    // Past the high-water mark, flush; stop reading the client only if the upstream really is behind
    // (whenWritable then promises an onWritable, which resumes the body).
    if (conn.outboundBuffered >= conn.loop.options.highWaterMark && !conn.whenWritable()) return false;
    return true;
  }

  end(trailers: readonly [string, string][]): void {
    this.requestDone = true;
    const conn = this.client?.conn;
    if (conn === undefined) return;
    if (!this.responseStarted) conn.setDeadline(this.firstByteDeadline());
    if (!this.chunkedUp) return;
    let last = '0\r\n';
    // Trailer fields the proxy would not forward as headers (framing, Host, the fields it writes, the route's
    // removals) are dropped too: an upstream that merges trailers into the header must not see them.
    const skip = this.route.requestSkip;
    for (const [name, value] of trailers) {
      const lower = name.toLowerCase();
      if (skip.get(lower.length)?.includes(lower)) continue;
      last += `${name}: ${value}\r\n`;
    }
    conn.writeLatin1(`${last}\r\n`);
  }

  error(_err: Error): void {
    // The client's body broke off: the upstream request cannot complete, and it is not the target's fault.
    this.finished = true;
    this.clientGone = true;
    this.client?.abort(new Error('client request body failed'));
  }

  private remaining(): number {
    return Math.max(1, this.deadlineTotal - this.ctx.loop.now());
  }

  private firstByteDeadline(): number {
    return Math.min(this.upstream.config.timeouts.firstByte, this.remaining());
  }

  /** The upstream drained below its low-water mark: read the client's body again. */
  upstreamWritable(): void {
    // Once answered, the connection's request object may already serve the next request: leave it alone.
    if (!this.requestDone && !this.finished) this.req.resumeBody();
  }

  // ---- ResponseSink: the upstream's response, downstream -------------------------------------------------

  onHead(response: ClientResponse): void {
    this.responseStarted = true;
    const client = this.client!;
    const remaining = this.deadlineTotal - this.ctx.loop.now();
    client.conn.setDeadline(Math.max(1, remaining));
    const res = this.res;
    const route = this.route;
    const status = response.status;
    try {
      if (route.inspectsResponses) {
        this.headAsStrings(response);
        return;
      }
      // No filter needs the fields as strings: forward them as bytes, decided in place.
      const connection = response.header('connection');
      const listed = connection === undefined ? null : connectionTokens(connection);
      const count = response.headerCount;
      const keep = responseKeep(count);
      const skip = route.responseSkip;
      let size = 0;
      let hasDate = false;
      for (let k = 0; k < count; k++) {
        keep[k] = 0;
        const len = response.fieldNameLength(k);
        const candidates = skip.get(len);
        if (candidates !== undefined && namedIn(response, k, candidates)) continue;
        if (listed?.has(response.fieldName(k).toLowerCase())) continue;
        if (len === 4 && response.fieldNameIs(k, 'date')) hasDate = true;
        keep[k] = 1;
        size += response.fieldSize(k);
      }
      res.status(status);
      for (const pair of route.responseAdd) res.appendHeader(pair[0], pair[1]);
      if (route.addRequestId && response.header('x-request-id') === undefined)
        res.appendHeader('x-request-id', this.requestId);
      this.raw = response;
      this.rawSize = size;
      this.rawHasDate = hasDate;
      const length =
        response.contentLength >= 0 && status !== 204 && status !== 304 ? response.contentLength : -1;
      res.sendHead(length, this);
      this.raw = null;
    } catch (err) {
      // An upstream head we cannot forward (a status we do not speak...): a bad gateway, not a crash.
      this.raw = null;
      this.finished = true;
      client.abort(err as Error);
      sendGatewayError(res, 502, 'invalid response from upstream', {
        upstream: this.upstream.name,
        route: route.name,
      });
    }
  }

  // RawHeaders over the upstream response being forwarded (valid during onHead only).
  private raw: ClientResponse | null = null;
  private rawSize = 0;
  private rawHasDate = false;
  get size(): number {
    return this.rawSize;
  }
  get hasDate(): boolean {
    return this.rawHasDate;
  }
  copy(buf: Buffer, p: number): number {
    const response = this.raw!;
    const keep = keepResponse;
    for (let k = 0; k < response.headerCount; k++) if (keep[k] === 1) p = response.copyField(k, buf, p);
    return p;
  }

  /** The response head through strings, for routes whose filters look at (or change) the fields. */
  private headAsStrings(response: ClientResponse): void {
    const res = this.res;
    const route = this.route;
    const listed = connectionTokens(response.header('connection'));
    const out: ResponseHeaders = { status: response.status, headers: [] };
    for (let k = 0; k < response.headerCount; k++) {
      const name = response.fieldName(k);
      const lower = name.toLowerCase();
      if (
        SKIP_RESPONSE.has(lower) ||
        route.responseRemove.has(lower) ||
        route.responseSet.has(lower) ||
        listed?.has(lower)
      ) {
        continue;
      }
      out.headers.push([name, response.fieldValue(k)]);
    }
    for (const pair of route.responseAdd) out.headers.push([pair[0], pair[1]]);
    if (route.addRequestId && response.header('x-request-id') === undefined)
      out.headers.push(['x-request-id', this.requestId]);
    for (const f of route.filters) f.onResponse?.(this.ctx, out);
    res.status(out.status);
    for (const [name, value] of out.headers) res.appendHeader(name, value);
    if (response.contentLength >= 0 && response.status !== 204 && response.status !== 304) {
      res.header('content-length', response.contentLength);
    }
  }

  onBody(chunk: Buffer): boolean {
    if (this.finished) return true;
    if (!this.res.write(chunk)) {
      this.resumeDownstream ??= () => this.client?.resumeResponse();
      this.res.drain().then(this.resumeDownstream);
      return false; // the client is slower than the upstream: stop reading the upstream
    }
    return true;
  }

  onEnd(_trailers: readonly [string, string][]): void {
    const target = this.target!;
    const client = this.client!;
    target.active--;
    this.client = null;
    if (!this.requestDone) client.reusable = false; // it answered before reading our whole body
    if (this.finished) return;
    this.finished = true;
    if (this.res.statusCode >= 500) this.upstream.failed(target);
    else this.upstream.succeeded(target);
    this.res.end();
  }

  onError(err: Error): void {
    if (this.client === null && this.target === null) return;
    const code = (err as HttpError & { code?: string }).code;
    const timeout = code === 'ERR_NETLOOM_DEADLINE';
    this.failAttempt(timeout ? 504 : 502, timeout ? 'upstream timeout' : 'upstream connection failed', true);
  }

  private downstreamGone(): void {
    if (this.finished) return;
    this.finished = true;
    this.clientGone = true;
    this.client?.abort(new Error('client went away'));
  }
}

/** Per-field keep flags, shared (one loop thread, no re-entrancy during a head's serialization). */
let keepFlags = new Uint8Array(128);
let keepResponse = new Uint8Array(128);

function responseKeep(n: number): Uint8Array {
  if (keepResponse.length < n) keepResponse = new Uint8Array(Math.max(n, keepResponse.length * 2));
  return keepResponse;
}

/** Whether field `k` of `response` has one of `names` (a loop, not a closure per field). */
function namedIn(response: ClientResponse, k: number, names: readonly string[]): boolean {
  for (let i = 0; i < names.length; i++) if (response.fieldNameIs(k, names[i]!)) return true;
  return false;
}

/** Writes latin1 text (request-line pieces: ASCII by construction) as bytes. */
function putText(buf: Buffer, p: number, text: string): number {
  for (let i = 0; i < text.length; i++) buf[p + i] = text.charCodeAt(i);
  return p + text.length;
}

function resumeUpstreamWrites(client: ClientConnection): void {
  (client.poolData as ProxyCall | undefined)?.upstreamWritable();
}
