import { netloomError } from './errors.ts';

/** A parsed listen or dial address. */
export type Address =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly family: 0 | 4 | 6 }
  | { readonly kind: 'unix'; readonly path: string };

/**
 * Parses `tcp://host:port`, `tcp4://…`, `tcp6://[::1]:port`, `unix:///path/to.sock` or a bare `host:port`
 * (gnet's address forms). Throws a `ERR_NETLOOM_ADDRESS` error naming what is wrong.
 */
export function parseAddress(input: string): Address {
  if (typeof input !== 'string' || input.length === 0) {
    throw netloomError('ERR_NETLOOM_ADDRESS', `address must be a non-empty string, got ${String(input)}`);
  }
  const sep = input.indexOf('://');
  const scheme = sep === -1 ? 'tcp' : input.slice(0, sep).toLowerCase();
  const rest = sep === -1 ? input : input.slice(sep + 3);
  if (scheme === 'unix') {
    if (rest.length === 0) throw netloomError('ERR_NETLOOM_ADDRESS', `unix address has no path: ${input}`);
    return { kind: 'unix', path: rest };
  }
  if (scheme !== 'tcp' && scheme !== 'tcp4' && scheme !== 'tcp6') {
    throw netloomError(
      'ERR_NETLOOM_ADDRESS',
      `unsupported scheme "${scheme}" in ${input} (tcp, tcp4, tcp6, unix)`,
    );
  }
  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close === -1 || rest[close + 1] !== ':') {
      throw netloomError('ERR_NETLOOM_ADDRESS', `malformed IPv6 address in ${input} (want [host]:port)`);
    }
    host = rest.slice(1, close);
    portText = rest.slice(close + 2);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon === -1) throw netloomError('ERR_NETLOOM_ADDRESS', `address ${input} has no port`);
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw netloomError('ERR_NETLOOM_ADDRESS', `invalid port "${portText}" in ${input}`);
  }
  const family = scheme === 'tcp4' ? 4 : scheme === 'tcp6' ? 6 : 0;
  if (host === '') host = family === 6 ? '::' : '0.0.0.0';
  return { kind: 'tcp', host, port: Number(portText), family };
}

/** Formats an address back into its URL form. */
export function formatAddress(address: Address): string {
  if (address.kind === 'unix') return `unix://${address.path}`;
  const host = address.host.includes(':') ? `[${address.host}]` : address.host;
  return `tcp://${host}:${address.port}`;
}
