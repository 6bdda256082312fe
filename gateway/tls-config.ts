/**
 * TLS in the gateway's configuration: a listener's certificates (files, an SNI map, a directory, client
 * certificates), and an upstream's TLS (a CA, the name to verify, a client certificate). Every file is read
 * and checked while the configuration is validated, so a certificate a loop could not load is a
 * configuration error at its path, never a failure inside one loop.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import tls from 'node:tls';
import { z } from 'zod';
import type { DialTlsOptions, TlsOptions } from '../core/index.ts';

const file = z.string().min(1);
const duration = z.number().int().min(1).max(2_147_483_647, 'at most 2147483647 ms (about 24.8 days)');
const NAME = /^(\*\.)?([a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}$/;

const pair = z.object({ certFile: file, keyFile: file }).strict();

/** Why a certificate and key do not load, in words (OpenSSL's reason), or null when they do. */
function pairProblem(certFile: string, keyFile: string, ca?: string): string | null {
  try {
    tls.createSecureContext({ cert: readFileSync(certFile), key: readFileSync(keyFile), ca });
    return null;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === 'ENOENT' ? `no such file ${e.path}` : `does not load (${e.message})`;
  }
}

function caProblem(caFile: string): string | null {
  try {
    tls.createSecureContext({ ca: readFileSync(caFile) });
    return null;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === 'ENOENT' ? `no such file ${e.path}` : `does not load (${e.message})`;
  }
}

/** A listener's TLS. Certificate files are watched: a valid new file applies without a reload. */
export const listenerTls = z
  .object({
    /** The default certificate (for clients without SNI, or naming no other). */
    certFile: file.optional(),
    keyFile: file.optional(),
    /** Certificates by server name: exact, or `*.` and one label. */
    certificates: z.record(z.string(), pair).default({}),
    /** A directory of `<name>.crt`/`<name>.key` pairs (`_wildcard.<parent>` for `*.<parent>`), loaded on demand. */
    certificateDirectory: file.optional(),
    unknownServername: z.enum(['default', 'refuse']).default('default'),
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    ciphers: z.string().min(1).optional(),
    handshakeTimeout: duration.default(10_000),
    sessionTickets: z.boolean().default(true),
    ticketKeyRotation: duration.min(1000).default(12 * 3600_000),
    /** Client certificates (mutual TLS), verified against `caFile`. */
    clientCertificates: z
      .object({ caFile: file, required: z.boolean().default(true) })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    if ((t.certFile === undefined) !== (t.keyFile === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'certFile and keyFile go together' });
      return;
    }
    const names = Object.keys(t.certificates);
    if (t.certFile === undefined && names.length === 0 && t.certificateDirectory === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: 'a TLS listener needs certFile/keyFile, certificates or a certificateDirectory',
      });
    }
    if (t.certFile !== undefined && t.keyFile !== undefined) {
      const problem = pairProblem(t.certFile, t.keyFile);
      if (problem !== null)
        ctx.addIssue({ code: 'custom', path: ['certFile'], message: `the certificate ${problem}` });
    }
    for (const name of names) {
      if (!NAME.test(name.toLowerCase())) {
        ctx.addIssue({
          code: 'custom',
          path: ['certificates', name],
          message: 'not a server name (exact, or *. and one label)',
        });
        continue;
      }
      const p = t.certificates[name]!;
      const problem = pairProblem(p.certFile, p.keyFile);
      if (problem !== null)
        ctx.addIssue({ code: 'custom', path: ['certificates', name], message: `the certificate ${problem}` });
    }
    if (t.certificateDirectory !== undefined) {
      let dir = false;
      try {
        dir = statSync(t.certificateDirectory).isDirectory();
      } catch {}
      if (!dir) ctx.addIssue({ code: 'custom', path: ['certificateDirectory'], message: 'not a directory' });
    }
    if (t.clientCertificates !== undefined) {
      const problem = caProblem(t.clientCertificates.caFile);
      if (problem !== null)
        ctx.addIssue({
          code: 'custom',
          path: ['clientCertificates', 'caFile'],
          message: `the CA ${problem}`,
        });
    }
  });

export type ListenerTls = z.infer<typeof listenerTls>;

/** The engine's `tls` option for a listener: ALPN offers `h2` first when the gateway serves HTTP/2. */
export function engineTls(t: ListenerTls, http2: boolean): TlsOptions {
  return {
    certFile: t.certFile,
    keyFile: t.keyFile,
    certificates: t.certificates,
    certificateDirectory: t.certificateDirectory,
    unknownServername: t.unknownServername,
    minVersion: t.minVersion,
    ciphers: t.ciphers,
    handshakeTimeout: t.handshakeTimeout,
    sessionTickets: t.sessionTickets,
    ticketKeyRotation: t.ticketKeyRotation,
    alpnProtocols: http2 ? ['h2', 'http/1.1'] : ['http/1.1'],
    clientCertificates: t.clientCertificates,
  };
}

/** An upstream's TLS: on for every target (as `https://` on one target is). */
export const upstreamTls = z
  .object({
    /** CAs to verify the targets against (PEM file); default: Node's bundled roots. */
    caFile: file.optional(),
    /** The name sent as SNI and verified; default: each target's host (an IP address is verified as such). */
    servername: z.string().min(1).optional(),
    /** Verify the targets' certificates (default true; false only for tests). */
    verify: z.boolean().default(true),
    /** A client certificate for upstreams that ask for one (mutual TLS). */
    certFile: file.optional(),
    keyFile: file.optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.caFile !== undefined) {
      const problem = caProblem(t.caFile);
      if (problem !== null) ctx.addIssue({ code: 'custom', path: ['caFile'], message: `the CA ${problem}` });
    }
    if ((t.certFile === undefined) !== (t.keyFile === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'certFile and keyFile go together' });
    } else if (t.certFile !== undefined) {
      const problem = pairProblem(t.certFile, t.keyFile!);
      if (problem !== null)
        ctx.addIssue({ code: 'custom', path: ['certFile'], message: `the certificate ${problem}` });
    }
  });

export type UpstreamTls = z.infer<typeof upstreamTls>;

/** A target address's scheme: `https://` turns TLS on, `http://` (or none) leaves it to the upstream's `tls`. */
export function splitScheme(address: string): { address: string; https: boolean } {
  if (address.startsWith('https://')) return { address: address.slice(8), https: true };
  if (address.startsWith('http://')) return { address: address.slice(7), https: false };
  return { address, https: false };
}

/** The dial options for a target, or undefined for plain TCP. Files are read here (once per version). */
export function dialTls(
  upstream: UpstreamTls | undefined,
  https: boolean,
  http2 = false,
): DialTlsOptions | undefined {
  if (upstream === undefined && !https) return undefined;
  const t = upstream;
  return {
    servername: t?.servername,
    rejectUnauthorized: t?.verify ?? true,
    ca: t?.caFile === undefined ? undefined : readFileSync(t.caFile, 'utf8'),
    cert: t?.certFile === undefined ? undefined : readFileSync(t.certFile, 'utf8'),
    key: t?.keyFile === undefined ? undefined : readFileSync(t.keyFile, 'utf8'),
    alpnProtocols: http2 ? ['h2'] : ['http/1.1'],
  };
}

/** A hash of every upstream TLS file's contents (a file that cannot be read counts as its error). */
export function upstreamTlsFingerprint(config: { upstreams: Record<string, { tls?: UpstreamTls }> }): string {
  const hash = createHash('sha256');
  for (const [name, u] of Object.entries(config.upstreams)) {
    for (const path of [u.tls?.caFile, u.tls?.certFile, u.tls?.keyFile]) {
      if (path === undefined) continue;
      hash.update(`${name}\0${path}\0`);
      try {
        hash.update(readFileSync(path));
      } catch (err) {
        hash.update(String((err as NodeJS.ErrnoException).code));
      }
    }
  }
  return hash.digest('hex');
}
