/**
 * HTTP/2 field rules (RFC 9113 §8.2, §8.3): what makes a request's field block malformed, and how the
 * handler's response headers become an HTTP/2 field list. A malformed request is a stream error
 * PROTOCOL_ERROR (§8.1.1); the checks run on the decoded list once, before the handler sees it.
 */
import type { HeaderField } from './hpack.ts';

/** A request's head, checked: the pseudo-header fields apart, the regular fields in order. */
export interface RequestHead {
  method: string;
  scheme: string;
  authority: string;
  path: string;
  /** Regular fields, names lower-case, with `host` first when only `:authority` named it. */
  names: string[];
  values: string[];
  /** Content-Length, or -1. */
  contentLength: number;
  /** `expect: 100-continue` (an interim 100 goes out when the handler starts reading the body). */
  expectContinue: boolean;
  /** An expectation other than 100-continue (answered 417). */
  expectOther: boolean;
}

/** Field names no HTTP/2 message may carry (§8.2.2). */
const CONNECTION_SPECIFIC = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
]);

/** tchar of RFC 9110 §5.6.2 without upper-case letters (§8.2.1: names are lower-case in HTTP/2). */
const NAME_CHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME_CHAR[c.charCodeAt(0)] = 1;

/** Whether `name` is a valid lower-case field name. */
export function validName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c > 0x7f || NAME_CHAR[c] !== 1) return false;
  }
  return true;
}

/** §8.2.1: no NUL, CR or LF, and no whitespace at either end. */
export function validValue(value: string): boolean {
  const n = value.length;
  if (n === 0) return true;
  let c = value.charCodeAt(0);
  if (c === 0x20 || c === 0x09) return false;
  c = value.charCodeAt(n - 1);
  if (c === 0x20 || c === 0x09) return false;
  for (let i = 0; i < n; i++) {
    c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d || c > 0xff) return false;
  }
  return true;
}

/** Why a request block is malformed, or null when it is well formed (then `out` holds the head). */
export function checkRequest(fields: readonly HeaderField[], out: RequestHead): string | null {
  let method = '';
  let scheme = '';
  let authority = '';
  let path = '';
  let seen = 0; // bits: 1 method, 2 scheme, 4 authority, 8 path, 16 protocol
  let regular = false;
  let host = -1;
  let cookies = -1;
  let contentLength = -1;
  let expectContinue = false;
  let expectOther = false;
  const names: string[] = [];
  const values: string[] = [];
  for (let i = 0; i < fields.length; i++) {
    const { name, value } = fields[i]!;
    if (name.charCodeAt(0) === 0x3a) {
      if (regular) return `pseudo-header field ${name} after a regular field`;
      let bit: number;
      switch (name) {
        case ':method':
          bit = 1;
          method = value;
          break;
        case ':scheme':
          bit = 2;
          scheme = value;
          break;
        case ':authority':
          bit = 4;
          authority = value;
          break;
        case ':path':
          bit = 8;
          path = value;
          break;
        default:
          return `pseudo-header field ${name} in a request`;
      }
      if ((seen & bit) !== 0) return `a second ${name}`;
      seen |= bit;
      if (!validValue(value)) return `an invalid value of ${name}`;
      continue;
    }
    regular = true;
    if (!validName(name)) return `invalid field name ${JSON.stringify(name.slice(0, 64))}`;
    if (!validValue(value)) return `an invalid value of field ${name}`;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
    if (name === 'te' && value !== 'trailers') return 'te other than "trailers"';
    if (name === 'content-length') {
      if (!/^\d{1,15}$/.test(value)) return 'an invalid content-length';
      const n = Number(value);
      if (contentLength !== -1 && contentLength !== n) return 'content-length values that differ';
      if (contentLength !== -1) continue;
      contentLength = n;
    } else if (name === 'expect') {
      if (value.toLowerCase() === '100-continue') expectContinue = true;
      else expectOther = true;
    } else if (name === 'host') {
      if (host !== -1) return 'a second host';
      host = names.length;
    } else if (name === 'cookie') {
      // §8.2.3: cookie crumbs are joined with "; " for an HTTP/1.1 hop (and read as one by handlers).
      if (cookies !== -1) {
        values[cookies] += `; ${value}`;
        continue;
      }
      cookies = names.length;
    }
    names.push(name);
    values.push(value);
  }
  if ((seen & 1) === 0) return 'no :method';
  if (method.length === 0 || !validName(method.toLowerCase())) return 'an invalid :method';
  if (method === 'CONNECT') {
    // §8.5: CONNECT names only :method and :authority.
    if ((seen & 10) !== 0) return 'CONNECT with :scheme or :path';
    if ((seen & 4) === 0) return 'CONNECT without :authority';
  } else {
    if ((seen & 2) === 0) return 'no :scheme';
    if ((seen & 8) === 0 || path.length === 0) return 'no :path';
    if (path.charCodeAt(0) !== 0x2f && !(path === '*' && method === 'OPTIONS'))
      return 'a :path not starting with /';
  }
  if (host !== -1 && (seen & 4) !== 0 && values[host]!.toLowerCase() !== authority.toLowerCase())
    return 'host and :authority differ';
  if (host === -1 && (seen & 4) !== 0) {
    // Handlers and HTTP/1.1 upstreams find the authority where they look for it.
    names.unshift('host');
    values.unshift(authority);
  }
  out.method = method;
  out.scheme = scheme;
  out.authority = authority;
  out.path = method === 'CONNECT' ? authority : path;
  out.names = names;
  out.values = values;
  out.contentLength = contentLength;
  out.expectContinue = expectContinue;
  out.expectOther = expectOther;
  return null;
}

/** Why a trailer block is malformed (§8.1: no pseudo-header fields), or null; adds its fields to `out`. */
export function checkTrailers(fields: readonly HeaderField[], out: [string, string][]): string | null {
  for (let i = 0; i < fields.length; i++) {
    const { name, value } = fields[i]!;
    if (name.charCodeAt(0) === 0x3a) return `pseudo-header field ${name} in trailers`;
    if (!validName(name)) return `invalid field name ${JSON.stringify(name.slice(0, 64))}`;
    if (!validValue(value)) return `an invalid value of field ${name}`;
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific field ${name}`;
    out.push([name, value]);
  }
  return null;
}

/** Whether a response header may go out over HTTP/2 (connection-specific ones are dropped, §8.2.2). */
export function connectionSpecific(lowerName: string): boolean {
  return CONNECTION_SPECIFIC.has(lowerName);
}
