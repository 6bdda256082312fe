import { netloomError } from '../errors.ts';

/** PEM text, or its bytes. */
export type Pem = string | Uint8Array;

/** One certificate chain and its private key: PEM given inline, or files read (and watched) by every loop. */
export interface CertificatePair {
  /** The certificate chain, PEM (leaf first). Give this or `certFile`. */
  cert?: Pem;
  /** The private key, PEM. Give this or `keyFile`. */
  key?: Pem;
  /** Path of a PEM file with the chain; watched: a valid new file applies to new handshakes on every loop. */
  certFile?: string;
  /** Path of the PEM key file; watched like `certFile`. */
  keyFile?: string;
  /** Passphrase of an encrypted key. */
  passphrase?: string;
}

/**
 * TLS on a listener (the engine's `tls` option). Every option is data, structured-cloned into each loop.
 * Certificates come from, in order: `certificates` (exact names, then `*.parent` wildcards of one label),
 * `certificateDirectory`, `certificateSource`, and then the default (`cert`/`key` or `certFile`/`keyFile`).
 */
export interface TlsOptions extends CertificatePair {
  /**
   * Certificates by server name: exact (`api.example.com`) or a wildcard of one label (`*.example.com`, which
   * matches `a.example.com` but neither `example.com` nor `a.b.example.com`). Names are case-insensitive.
   */
  certificates?: Record<string, CertificatePair>;
  /**
   * A directory of PEM pairs named after the server name: `api.example.com.crt` with `api.example.com.key`,
   * and `_wildcard.example.com.crt`/`.key` for `*.example.com`. A pair is read on the first handshake naming
   * it and kept in the context cache; the directory is watched, so a changed or added pair applies to new
   * handshakes (a pair that does not load is refused with a log line, and the previous one stays).
   */
  certificateDirectory?: string;
  /**
   * A module specifier whose module exports a {@link CertificateSource} (as `default` or `certificateSource`),
   * imported by every loop: for certificates kept elsewhere (a control plane, ACME). Asked after
   * `certificates` and `certificateDirectory`.
   */
  certificateSource?: string;
  /** Server names whose secure context a loop keeps, least recently used evicted first. Default 1000. */
  contextCacheSize?: number;
  /**
   * What a handshake gets that names no server, or one without a certificate: `default` (the default
   * certificate) or `refuse` (an `unrecognized_name` alert). Default `default`; without a default
   * certificate such handshakes are always refused.
   */
  unknownServername?: 'default' | 'refuse';
  /** Lowest protocol version accepted. Default `TLSv1.2`. */
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** Highest protocol version accepted. Default `TLSv1.3`. */
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL cipher list (TLS 1.2 suites, and TLS 1.3 ones by their `TLS_` names). Default: Node's. */
  ciphers?: string;
  /** ECDH groups, colon-separated (OpenSSL's names). Default: Node's (`auto`). */
  ecdhCurve?: string;
  /**
   * ALPN protocols offered, most preferred first (for example `['h2', 'http/1.1']`). A client that offers
   * ALPN and shares none of them is refused (`no_application_protocol`). The result is `conn.alpnProtocol`.
   */
  alpnProtocols?: string[];
  /**
   * Milliseconds from accept to a finished handshake; a connection still handshaking then is closed and
   * counted in `tlsTimedOut`. Default 10000.
   */
  handshakeTimeout?: number;
  /**
   * Client certificates (mutual TLS): verified against `ca` (PEM) or `caFile`. With `required` (the default)
   * a client without a valid certificate fails the handshake; without it the handshake proceeds and
   * `conn.tls.authorized` says whether the certificate verified.
   */
  clientCertificates?: { ca?: Pem; caFile?: string; required?: boolean };
  /** Issue session tickets (resumption). Default true. */
  sessionTickets?: boolean;
  /**
   * Milliseconds between rotations of the ticket keys every loop shares. Tickets sealed with the previous
   * keys still resume, so a ticket lives up to two periods. Default 12 hours.
   */
  ticketKeyRotation?: number;
}

/** A certificate pair for one server name, as a {@link CertificateSource} returns it. */
export interface LoadedCertificate {
  cert: Pem;
  key: Pem;
  passphrase?: string;
}

/**
 * Where a loop finds certificates it was not given inline: implemented by a module named in
 * `tls.certificateSource`. Called on loop threads only.
 */
export interface CertificateSource {
  /**
   * The certificate for `servername` (lowercased), or null when there is none. Called at the first
   * handshake naming it, and again after `changed` named it; concurrent handshakes share one call.
   */
  load(servername: string): Promise<LoadedCertificate | null> | LoadedCertificate | null;
  /**
   * Optional: calls `changed(servername)` whenever that name's certificate changes, so loops drop the
   * context they cached. Returns a function that stops watching (called when the loop stops).
   */
  watch?(changed: (servername: string) => void): () => void;
}

/** `TlsOptions` with defaults applied, validated. */
export interface ResolvedTls extends TlsOptions {
  certificates: Record<string, CertificatePair>;
  contextCacheSize: number;
  unknownServername: 'default' | 'refuse';
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  maxVersion: 'TLSv1.2' | 'TLSv1.3';
  alpnProtocols: string[];
  handshakeTimeout: number;
  sessionTickets: boolean;
  ticketKeyRotation: number;
}

const VERSIONS = ['TLSv1.2', 'TLSv1.3'];
/** A host name as a certificate may name it: labels of letters, digits, '-', '_', optionally `*.` first. */
const NAME = /^(\*\.)?([a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}$/;
/** Longest timer Node keeps (2^31-1 ms). */
const MAX_TIMER = 2 ** 31 - 1;

function fail(message: string): never {
  throw netloomError('ERR_NETLOOM_OPTION', message);
}

function pemOrUndefined(path: string, value: unknown): void {
  if (value !== undefined && typeof value !== 'string' && !(value instanceof Uint8Array)) {
    fail(`option ${path} must be PEM text or bytes`);
  }
}

function stringOrUndefined(path: string, value: unknown): void {
  if (value !== undefined && (typeof value !== 'string' || value === '')) {
    fail(`option ${path} must be a non-empty string`);
  }
}

/** Checks one pair's shape; `needed`: it must name a certificate and a key. */
function checkPair(path: string, pair: unknown, needed: boolean): void {
  if (pair === null || typeof pair !== 'object') fail(`option ${path} must be an object`);
  const p = pair as CertificatePair;
  pemOrUndefined(`${path}.cert`, p.cert);
  pemOrUndefined(`${path}.key`, p.key);
  stringOrUndefined(`${path}.certFile`, p.certFile);
  stringOrUndefined(`${path}.keyFile`, p.keyFile);
  if (p.passphrase !== undefined && typeof p.passphrase !== 'string') {
    fail(`option ${path}.passphrase must be a string`);
  }
  if (p.cert !== undefined && p.certFile !== undefined)
    fail(`option ${path}: give cert or certFile, not both`);
  if (p.key !== undefined && p.keyFile !== undefined) fail(`option ${path}: give key or keyFile, not both`);
  const hasCert = p.cert !== undefined || p.certFile !== undefined;
  const hasKey = p.key !== undefined || p.keyFile !== undefined;
  if (hasCert !== hasKey) fail(`option ${path}: a certificate needs its key (and a key its certificate)`);
  if (needed && !hasCert) fail(`option ${path} needs cert and key, or certFile and keyFile`);
}

/** @internal Applies defaults and validates the `tls` option; throws `ERR_NETLOOM_OPTION` naming the path. */
export function resolveTls(given: TlsOptions): ResolvedTls {
  if (given === null || typeof given !== 'object') fail('option tls must be an object');
  checkPair('tls', given, false);
  const certificates: Record<string, CertificatePair> = {};
  if (given.certificates !== undefined) {
    if (given.certificates === null || typeof given.certificates !== 'object') {
      fail('option tls.certificates must be an object of server names');
    }
    for (const [name, pair] of Object.entries(given.certificates)) {
      const lower = name.toLowerCase();
      if (!NAME.test(lower) || lower.length > 253) {
        fail(`option tls.certificates: "${name}" is not a server name (exact, or *. and one label)`);
      }
      checkPair(`tls.certificates["${name}"]`, pair, true);
      certificates[lower] = pair;
    }
  }
  stringOrUndefined('tls.certificateDirectory', given.certificateDirectory);
  stringOrUndefined('tls.certificateSource', given.certificateSource);
  const hasDefault = given.cert !== undefined || given.certFile !== undefined;
  if (
    !hasDefault &&
    Object.keys(certificates).length === 0 &&
    given.certificateDirectory === undefined &&
    given.certificateSource === undefined
  ) {
    fail('option tls needs a certificate: cert/key, certFile/keyFile, certificates, a directory or a source');
  }
  const int = (name: string, value: unknown, def: number, min: number, max: number): number => {
    if (value === undefined) return def;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      fail(`option tls.${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
    }
    return value;
  };
  const version = (name: string, value: unknown, def: 'TLSv1.2' | 'TLSv1.3') => {
    if (value === undefined) return def;
    if (typeof value !== 'string' || !VERSIONS.includes(value)) {
      fail(`option tls.${name} must be one of ${VERSIONS.join(', ')}, got ${String(value)}`);
    }
    return value as 'TLSv1.2' | 'TLSv1.3';
  };
  const minVersion = version('minVersion', given.minVersion, 'TLSv1.2');
  const maxVersion = version('maxVersion', given.maxVersion, 'TLSv1.3');
  if (minVersion > maxVersion) fail('option tls.minVersion must not be above tls.maxVersion');
  const alpn = given.alpnProtocols ?? [];
  if (
    !Array.isArray(alpn) ||
    alpn.some((p) => typeof p !== 'string' || Buffer.byteLength(p) === 0 || Buffer.byteLength(p) > 255)
  ) {
    fail('option tls.alpnProtocols must be an array of protocol names (1 to 255 bytes each)');
  }
  if (given.unknownServername !== undefined && !['default', 'refuse'].includes(given.unknownServername)) {
    fail(
      `option tls.unknownServername must be "default" or "refuse", got ${String(given.unknownServername)}`,
    );
  }
  if (given.clientCertificates !== undefined) {
    const cc = given.clientCertificates;
    if (cc === null || typeof cc !== 'object') fail('option tls.clientCertificates must be an object');
    pemOrUndefined('tls.clientCertificates.ca', cc.ca);
    stringOrUndefined('tls.clientCertificates.caFile', cc.caFile);
    if ((cc.ca === undefined) === (cc.caFile === undefined)) {
      fail('option tls.clientCertificates needs ca or caFile (one of them)');
    }
    if (cc.required !== undefined && typeof cc.required !== 'boolean') {
      fail('option tls.clientCertificates.required must be a boolean');
    }
  }
  for (const name of ['ciphers', 'ecdhCurve'] as const) stringOrUndefined(`tls.${name}`, given[name]);
  if (given.sessionTickets !== undefined && typeof given.sessionTickets !== 'boolean') {
    fail('option tls.sessionTickets must be a boolean');
  }
  return {
    ...given,
    certificates,
    contextCacheSize: int('contextCacheSize', given.contextCacheSize, 1000, 1, 1_000_000),
    unknownServername: given.unknownServername ?? 'default',
    minVersion,
    maxVersion,
    alpnProtocols: [...alpn],
    handshakeTimeout: int('handshakeTimeout', given.handshakeTimeout, 10_000, 1, MAX_TIMER),
    sessionTickets: given.sessionTickets ?? true,
    ticketKeyRotation: int('ticketKeyRotation', given.ticketKeyRotation, 12 * 3600_000, 1000, MAX_TIMER),
  };
}

/** TLS of a dialed connection (`loop.dial(address, handler, { tls })`). */
export interface DialTlsOptions {
  /** The name sent as SNI and checked against the certificate. Default: the address's host (not an IP). */
  servername?: string;
  /** Trusted CAs, PEM; default: Node's bundled roots. */
  ca?: Pem | Pem[];
  /** Verify the peer's certificate (chain and name). Default true; false is for tests only. */
  rejectUnauthorized?: boolean;
  /** A client certificate chain and key (mutual TLS). */
  cert?: Pem;
  key?: Pem;
  passphrase?: string;
  /** ALPN protocols offered, most preferred first. */
  alpnProtocols?: string[];
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** A session from an earlier connection's `conn.tls.session` to resume. */
  session?: Uint8Array;
}
