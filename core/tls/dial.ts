import { isIP } from 'node:net';
import type tls from 'node:tls';
import type { Address } from '../address.ts';
import type { DialTlsOptions, Pem } from './options.ts';

function pem(value: Pem): string | Buffer {
  return typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * `tls.connect` options for a dial to `addr`: verification on unless turned off, SNI from `servername` or
 * the address's host name (never an IP address, RFC 6066 §3), half-open like every engine connection.
 */
export function dialTlsOptions(
  addr: Address,
  options: DialTlsOptions,
  noDelay: boolean,
): tls.ConnectionOptions {
  const base: Record<string, unknown> =
    addr.kind === 'unix'
      ? { path: addr.path }
      : { host: addr.host, port: addr.port, family: addr.family === 0 ? undefined : addr.family };
  const host = addr.kind === 'unix' ? '' : addr.host;
  const servername = options.servername ?? (host !== '' && isIP(host) === 0 ? host : undefined);
  return {
    ...base,
    allowHalfOpen: true,
    noDelay,
    servername,
    rejectUnauthorized: options.rejectUnauthorized !== false,
    ca:
      options.ca === undefined
        ? undefined
        : Array.isArray(options.ca)
          ? options.ca.map(pem)
          : pem(options.ca as Pem),
    cert: options.cert === undefined ? undefined : pem(options.cert),
    key: options.key === undefined ? undefined : pem(options.key),
    passphrase: options.passphrase,
    ALPNProtocols: options.alpnProtocols,
    minVersion: options.minVersion,
    session: options.session === undefined ? undefined : Buffer.from(options.session),
  } as tls.ConnectionOptions;
}
