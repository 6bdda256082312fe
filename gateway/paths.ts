/**
 * Request paths as the gateway routes them (RFC 3986 §6.2.2): percent-encodings of unreserved characters are
 * decoded (`/%61dmin` is `/admin`), the others upper-cased (`%2f` is `%2F`), repeated slashes merged by choice
 * (`//admin` is `/admin`), and dot segments removed (`/a/../admin` is `/admin`), so no spelling of a path can
 * miss its route and its filters. The upstream receives the same normalised path.
 */

/** How paths are normalised (the `http.paths` section of the configuration). */
export interface PathOptions {
  /** Merge runs of `/` into one (default true). */
  mergeSlashes: boolean;
  /**
   * What to do with an encoded slash (`%2F`) or backslash (`%5C`), which some upstreams decode into a
   * segment separator: `refuse` answers 400 (the default), `keep` leaves it encoded (inside its segment).
   */
  encodedSlashes: 'refuse' | 'keep';
}

/** Why a path was refused (the gateway answers 400 with the message). */
export class PathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathError';
  }
}

const HEX = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function unreserved(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0x5f ||
    c === 0x7e
  );
}

/**
 * The normalised form of `path` (an origin-form path, without its query); throws {@link PathError} for a
 * malformed percent-encoding or a refused encoded slash. Paths that need nothing are returned as they are
 * after one scan.
 */
export function normalizePath(path: string, options: PathOptions): string {
  if (path.charCodeAt(0) !== 0x2f) throw new PathError('a path starts with /');
  // Fast path: no percent sign, no dot segment, no repeated slash.
  let plain = true;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    // Not a path character (RFC 3986), and some upstreams read it as `/`: `/x\..\admin` would miss /admin.
    if (c === 0x5c) throw new PathError('a backslash in the path');
    // Origin-form has no fragment (RFC 9112 §3.2); upstreams' URL parsers cut it, so `/admin#` is `/admin`.
    if (c === 0x23) throw new PathError('a fragment (#) in the request target');
    if (c === 0x25 || (c === 0x2f && (path.charCodeAt(i + 1) === 0x2f || path.charCodeAt(i + 1) === 0x2e))) {
      plain = false; // (the scan goes on: a backslash anywhere is refused)
    }
  }
  if (plain) return path;
  // 1. Percent-encodings: unreserved ones decoded, the others checked and upper-cased.
  let decoded = '';
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c !== 0x25) {
      decoded += path[i];
      continue;
    }
    const hi = hexValue(path.charCodeAt(i + 1));
    const lo = hexValue(path.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) throw new PathError('malformed percent-encoding in the path');
    const byte = hi * 16 + lo;
    if (unreserved(byte)) decoded += String.fromCharCode(byte);
    else {
      if ((byte === 0x2f || byte === 0x5c) && options.encodedSlashes === 'refuse')
        throw new PathError(`an encoded ${byte === 0x2f ? 'slash (%2F)' : 'backslash (%5C)'} in the path`);
      decoded += `%${HEX[hi]}${HEX[lo]}`;
    }
    i += 2;
  }
  // 2. Segments: empty ones merged by choice, dot segments resolved (RFC 3986 §5.2.4).
  const parts = decoded.split('/');
  const out: string[] = [];
  const last = parts.length - 1;
  for (let k = 1; k <= last; k++) {
    const seg = parts[k]!;
    // `..;x` is a dot segment to servlet containers (path parameters): `/x/..;/admin` is their `/admin`.
    if (seg.startsWith('.;') || seg.startsWith('..;')) throw new PathError('a dot segment with parameters');
    if (seg === '.' || seg === '..') {
      if (seg === '..' && out.length > 0) out.pop();
      if (k === last) out.push(''); // `/a/.` and `/a/..` keep their trailing slash
      continue;
    }
    if (seg === '' && options.mergeSlashes && k !== last) continue;
    out.push(seg);
  }
  return `/${out.join('/')}`;
}
