/**
 * Fields a proxy does not forward as received: hop-by-hop fields (RFC 9110 §7.6.1), framing it redoes, and
 * (for requests) the fields it rewrites itself. Kept by name length too, so a proxy can compare names in
 * place without decoding them.
 */

/** Hop-by-hop fields (RFC 9110 §7.6.1) and the framing a proxy redoes. */
export const HOP_BY_HOP: readonly string[] = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
];

/** Request fields the proxy always drops or writes itself (Host is rewritten). */
export const SKIP_REQUEST: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'host']);

/** Forwarding fields, which the proxy extends when a route adds them. */
export const FORWARDING: ReadonlySet<string> = new Set([
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'forwarded',
]);

/** Response fields the proxy drops (it frames the body again). */
export const SKIP_RESPONSE: ReadonlySet<string> = new Set(HOP_BY_HOP);

/** Lower-case names grouped by length, for in-place comparison. */
export function byLength(...sets: Iterable<string>[]): ReadonlyMap<number, readonly string[]> {
  const map = new Map<number, string[]>();
  for (const set of sets) {
    for (const name of set) {
      const list = map.get(name.length) ?? [];
      if (!list.includes(name)) list.push(name);
      map.set(name.length, list);
    }
  }
  return map;
}
