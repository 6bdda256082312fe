/**
 * An upstream's response head on its way to the client. By default its field lines are copied as bytes,
 * decided in place (hop-by-hop fields, those `Connection` names and the route's removals dropped); for a
 * route with an `onUpstreamResponse` filter, as strings the filter can change. Either way the server frames
 * the body again (Content-Length kept when the upstream sent one, else chunked).
 */
import type { ClientResponse, RawHeaders, Response } from '../protocols/http1/index.ts';
import type { RequestContext, ResponseHead } from './filter.ts';
import { SKIP_RESPONSE } from './hop-by-hop.ts';
import type { RouteRuntime } from './runtime.ts';
import { connectionTokens } from './upstream-head.ts';

/** Per-field keep flags, shared (one loop thread; a head is forwarded start to end without yielding). */
let keep = new Uint8Array(128);

/** The kept lines of the response being forwarded (valid during `forwardHead` only; one per thread). */
const raw = new (class implements RawHeaders {
  response: ClientResponse | null = null;
  size = 0;
  hasDate = false;
  copy(buf: Buffer, p: number): number {
    const response = this.response!;
    for (let k = 0; k < response.headerCount; k++) if (keep[k] === 1) p = response.copyField(k, buf, p);
    return p;
  }
})();

/** Whether field `k` of `response` has one of `names` (a loop, not a closure per field). */
function namedIn(response: ClientResponse, k: number, names: readonly string[]): boolean {
  for (let i = 0; i < names.length; i++) if (response.fieldNameIs(k, names[i]!)) return true;
  return false;
}

/** The body length to declare to the client: the upstream's Content-Length, or -1 to stream. */
function lengthOf(response: ClientResponse): number {
  const status = response.status;
  return response.contentLength >= 0 && status !== 204 && status !== 304 ? response.contentLength : -1;
}

/** An `onUpstreamResponse` filter threw (its error is the `cause`): the filter's fault, not the upstream's. */
export class ResponseFilterError extends Error {
  constructor(cause: unknown) {
    super('an onUpstreamResponse filter failed', { cause });
    this.name = 'ResponseFilterError';
  }
}

/**
 * Writes the client's response head from the upstream's. `requestId` is echoed when the route adds one and
 * the upstream did not send its own. Returns true when an `onUpstreamResponse` filter answered the client
 * itself (the upstream's head was not sent). Throws {@link ResponseFilterError} when such a filter threw, and
 * what `res` throws for a head it cannot send.
 */
export function forwardHead(
  ctx: RequestContext,
  route: RouteRuntime,
  response: ClientResponse,
  res: Response,
  requestId: string,
): boolean {
  if (route.onUpstreamResponse.length > 0) {
    return forwardAsStrings(ctx, route, response, res, requestId);
  }
  const listed = connectionTokens(response.header('connection'));
  const count = response.headerCount;
  if (keep.length < count) keep = new Uint8Array(Math.max(count, keep.length * 2));
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
  res.status(response.status);
  for (const pair of route.responseAdd) res.appendHeader(pair[0], pair[1]);
  if (route.addRequestId && response.header('x-request-id') === undefined)
    res.appendHeader('x-request-id', requestId);
  raw.response = response;
  raw.size = size;
  raw.hasDate = hasDate;
  try {
    res.sendHead(lengthOf(response), raw);
  } finally {
    raw.response = null;
  }
  return false;
}

/**
 * The upstream's head as strings (hop-by-hop fields, those `Connection` names and the route's removals
 * dropped, the route's additions made) after the route's `onUpstreamResponse` filters; null when one of them
 * answered the client itself. Throws {@link ResponseFilterError} when one threw.
 */
export function filteredHead(
  ctx: RequestContext,
  route: RouteRuntime,
  response: ClientResponse,
  res: Response,
  requestId: string,
): ResponseHead | null {
  const listed = connectionTokens(response.header('connection'));
  const head: ResponseHead = { status: response.status, headers: [] };
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
    head.headers.push([name, response.fieldValue(k)]);
  }
  for (const pair of route.responseAdd) head.headers.push([pair[0], pair[1]]);
  if (route.addRequestId && response.header('x-request-id') === undefined)
    head.headers.push(['x-request-id', requestId]);
  for (const f of route.onUpstreamResponse) {
    try {
      f.onUpstreamResponse!(ctx, head);
    } catch (err) {
      throw new ResponseFilterError(err);
    }
    if (res.headersSent) return null; // the filter answered (ctx.respond)
  }
  return head;
}

function forwardAsStrings(
  ctx: RequestContext,
  route: RouteRuntime,
  response: ClientResponse,
  res: Response,
  requestId: string,
): boolean {
  const head = filteredHead(ctx, route, response, res, requestId);
  if (head === null) return true;
  res.status(head.status);
  for (const [name, value] of head.headers) {
    // Framing is the server's to write: a filter's Content-Length or Transfer-Encoding would contradict it.
    if (SKIP_RESPONSE.has(name.toLowerCase())) continue;
    res.appendHeader(name, value);
  }
  res.sendHead(lengthOf(response));
  return false;
}
