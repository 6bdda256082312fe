// A throwaway ECDSA P-256 certificate for `localhost`, made with Debian's openssl for one bench run.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireTools } from './harness.ts';

/** Writes a certificate and key to a scratch directory; returns their paths. */
export function benchCertificate(): { cert: string; key: string } {
  requireTools(['openssl']);
  const dir = mkdtempSync(join(tmpdir(), 'netloom-bench-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost',
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}
