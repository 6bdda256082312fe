/**
 * The head of a proxied request on its way up, two ways. By default as bytes: the client's field lines are
 * copied as received (names compared in place) except those the route or a filter drops or replaces, and
 * only the few fields the proxy rewrites (Host, X-Forwarded-For, Forwarded) are decoded. For a route with an
 * `onUpstreamRequest` filter, as strings the filter can read and change. The codec (`ClientConnection.request`)
 * writes the request line, Host and framing around either.
 */
import type { Request } from '../protocols/http1/index.ts';
import type { UpstreamRequestHead } from './filter.ts';
import type { RouteRuntime } from './runtime.ts';

/** A filter's change to the upstream request: `value` null removes the field; `append` adds a value. */
export interface HeaderOverride {
  readonly lower: string;
  readonly name: string;
  readonly value: string | null;
  readonly append: boolean;
}

/** What a request's head is built from (the proxy call holds it). */
export interface HeadInput {
  readonly req: Request;
  readonly route: RouteRuntime;
  /** The fields filters set, appended or removed (null when none did). */
  readonly overrides: readonly HeaderOverride[] | null;
  /** The ids the proxy sends ('' when the route does not add them). */
  readonly requestId: string;
  readonly traceparent: string;
}

/** What `prepare` decided for the bytes path (kept on the call between `size` and `copy`). */
export interface PreparedHead {
  /** The Host value to send. */
  host: string;
  /** Decoded client values the proxy extends, or undefined. */
  clientHost: string | undefined;
  xff: string | undefined;
  forwarded: string | undefined;
  /** The route's and filters' own lines, as one string. */
  extra: string;
  /** The client's scheme, for X-Forwarded-Proto and Forwarded: `https` when it came over TLS. */
  proto: 'http' | 'https';
  /** An upper bound of the bytes `copy` writes. */
  size: number;
}

/** Per-field keep flags, shared (one loop thread; a head is built start to end without yielding). */
let keep = new Uint8Array(128);

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

export { connectionTokens };

/** Whether a filter's override names `lower` (set or removed: the client's values of it are not copied). */
function overridden(overrides: readonly HeaderOverride[] | null, lower: string): boolean {
  if (overrides === null) return false;
  for (const o of overrides) if (o.lower === lower && !o.append) return true;
  return false;
}

/** Bytes of the fixed text in the proxy's own lines (names, separators, CRLFs), rounded up. */
const TAIL_FIXED = 192;

/**
 * Decides which client fields go up (decoding the ones the proxy extends on the way) and how many bytes the
 * head may take. `targetHost` is the target's own Host value.
 */
export function prepareHead(input: HeadInput, targetHost: string, clientAddress: string): PreparedHead {
  const { req, route, overrides } = input;
  let clientHost: string | undefined;
  let xff: string | undefined;
  let forwarded: string | undefined;
  const listed = connectionTokens(req.header('connection'));
  const count = req.headerCount;
  if (keep.length < count) keep = new Uint8Array(Math.max(count, keep.length * 2));
  const skip = route.requestSkip;
  let size = 0;
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
        if (hit === 'host') clientHost = req.fieldValue(k);
        else if (hit === 'x-forwarded-for' && !route.requestRemove.has(hit))
          xff = xff === undefined ? req.fieldValue(k) : `${xff}, ${req.fieldValue(k)}`;
        else if (hit === 'forwarded' && !route.requestRemove.has(hit))
          forwarded = forwarded === undefined ? req.fieldValue(k) : `${forwarded}, ${req.fieldValue(k)}`;
        continue;
      }
    }
    if (listed !== null || overrides !== null) {
      const lower = req.fieldName(k).toLowerCase();
      if (listed?.has(lower) || overridden(overrides, lower)) {
        keep[k] = 0;
        continue;
      }
    }
    size += req.fieldSize(k);
  }
  // Rare lines (route additions, filter headers) as one string; the usual ones are written piecewise.
  let extra = '';
  for (const [name, value] of route.requestAdd)
    if (!overridden(overrides, name.toLowerCase())) extra += `${name}: ${value}\r\n`;
  if (overrides !== null)
    for (const o of overrides) if (o.value !== null) extra += `${o.name}: ${o.value}\r\n`;
  const host = route.preserveHost && clientHost !== undefined ? clientHost : targetHost;
  size +=
    TAIL_FIXED +
    2 + // `https` rather than `http`, twice
    2 * clientAddress.length +
    (xff?.length ?? 0) +
    (forwarded?.length ?? 0) +
    2 * (clientHost?.length ?? 0) +
    input.requestId.length +
    input.traceparent.length +
    extra.length;
  return { host, clientHost, xff, forwarded, extra, size, proto: req.secure ? 'https' : 'http' };
}

/** Writes latin1 text (checked field values, or the proxy's own ASCII) as bytes. */
function putText(buf: Buffer, p: number, text: string): number {
  for (let i = 0; i < text.length; i++) buf[p + i] = text.charCodeAt(i);
  return p + text.length;
}

/** Writes the field lines `prepareHead` decided on into `buf` at `p`; returns the end. */
export function copyHead(
  input: HeadInput,
  head: PreparedHead,
  clientAddress: string,
  buf: Buffer,
  p: number,
): number {
  const { req, route } = input;
  const count = req.headerCount;
  for (let k = 0; k < count; k++) if (keep[k] === 1) p = req.copyField(k, buf, p);
  if (route.addForwarded) p = putForwarded(buf, p, clientAddress, head);
  if (route.addRequestId) {
    p = putText(buf, p, 'x-request-id: ');
    p = putText(buf, p, input.requestId);
    p = putText(buf, p, '\r\n');
  }
  if (route.addTraceparent) {
    p = putText(buf, p, 'traceparent: ');
    p = putText(buf, p, input.traceparent);
    p = putText(buf, p, '\r\n');
  }
  return putText(buf, p, head.extra);
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

/** X-Forwarded-For/-Proto/-Host and Forwarded, extending what the client sent. */
function putForwarded(buf: Buffer, p: number, client: string, head: PreparedHead): number {
  const { xff, forwarded, clientHost } = head;
  p = putText(buf, p, 'x-forwarded-for: ');
  if (xff !== undefined) {
    p = putText(buf, p, xff);
    p = putText(buf, p, ', ');
  }
  p = putText(buf, p, client);
  p = putText(
    buf,
    p,
    head.proto === 'https' ? '\r\nx-forwarded-proto: https\r\n' : '\r\nx-forwarded-proto: http\r\n',
  );
  if (clientHost !== undefined) {
    p = putText(buf, p, 'x-forwarded-host: ');
    p = putText(buf, p, clientHost);
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
  p = putText(buf, p, head.proto === 'https' ? ';proto=https' : ';proto=http');
  // Only a well-formed host goes into Forwarded (a quote in it could forge a node the upstream trusts).
  if (clientHost !== undefined && isValidHost(clientHost)) {
    p = putText(buf, p, ';host="');
    p = putText(buf, p, clientHost);
    buf[p++] = 0x22;
  }
  buf[p++] = 0x0d;
  buf[p++] = 0x0a;
  return p;
}

/**
 * The same head as strings, for a route whose filters look at it: the kept client fields decoded, then the
 * proxy's own fields, the route's and the filters'. Framing fields are the codec's and never in the list.
 */
export function headAsStrings(
  input: HeadInput,
  head: PreparedHead,
  clientAddress: string,
  method: string,
  target: string,
): UpstreamRequestHead {
  const { req, route } = input;
  const headers: [string, string][] = [];
  for (let k = 0; k < req.headerCount; k++)
    if (keep[k] === 1) headers.push([req.fieldName(k), req.fieldValue(k)]);
  if (route.addForwarded) {
    const { xff, forwarded, clientHost } = head;
    headers.push(['x-forwarded-for', xff === undefined ? clientAddress : `${xff}, ${clientAddress}`]);
    headers.push(['x-forwarded-proto', head.proto]);
    if (clientHost !== undefined) headers.push(['x-forwarded-host', clientHost]);
    const node = clientAddress.includes(':') ? `"[${clientAddress}]"` : clientAddress;
    const hostPart = clientHost !== undefined && isValidHost(clientHost) ? `;host="${clientHost}"` : '';
    const own = `for=${node};proto=${head.proto}${hostPart}`;
    headers.push(['forwarded', forwarded === undefined ? own : `${forwarded}, ${own}`]);
  }
  if (route.addRequestId) headers.push(['x-request-id', input.requestId]);
  if (route.addTraceparent) headers.push(['traceparent', input.traceparent]);
  for (const [name, value] of route.requestAdd)
    if (!overridden(input.overrides, name.toLowerCase())) headers.push([name, value]);
  if (input.overrides !== null)
    for (const o of input.overrides) if (o.value !== null) headers.push([o.name, o.value]);
  return { method, target, headers };
}
