// Certificates made at test time with Debian's openssl (never committed): a CA, server certificates for
// given names (ECDSA P-256), and client certificates, in a temporary directory removed by the caller.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pair {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), 'netloom-tls-'));
  readonly ca: Pair;
  private serial = 1;

  constructor(caName = 'netloom test CA') {
    this.ca = this.selfSigned('ca', caName);
  }

  private openssl(args: string[]): void {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  private pair(base: string): Pair {
    const certFile = join(this.dir, `${base}.crt`);
    const keyFile = join(this.dir, `${base}.key`);
    return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
  }

  private selfSigned(base: string, cn: string): Pair {
    this.openssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      join(this.dir, `${base}.key`),
      '-out',
      join(this.dir, `${base}.crt`),
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return this.pair(base);
  }

  /**
   * A certificate signed by the CA for `names` (DNS names; the first is the CN), written as `<base>.crt` and
   * `<base>.key`. `client`: for client authentication. `days` < 0 makes one that has expired.
   */
  issue(base: string, names: string[], options: { client?: boolean; days?: number; ca?: Pair } = {}): Pair {
    const ca = options.ca ?? this.ca;
    const key = join(this.dir, `${base}.key`);
    const csr = join(this.dir, `${base}.csr`);
    const ext = join(this.dir, `${base}.ext`);
    this.openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
    this.openssl(['req', '-new', '-key', key, '-out', csr, '-subj', `/CN=${names[0]}`]);
    writeFileSync(
      ext,
      [
        names.length > 0 ? `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}` : '',
        `extendedKeyUsage=${options.client === true ? 'clientAuth' : 'serverAuth'}`,
      ].join('\n'),
    );
    const days = options.days ?? 2;
    const out = join(this.dir, `${base}.crt`);
    if (days > 0) {
      this.openssl([
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        ca.certFile,
        '-CAkey',
        ca.keyFile,
        '-set_serial',
        String(this.serial++),
        '-extfile',
        ext,
        '-days',
        String(days),
        '-out',
        out,
      ]);
    } else {
      // OpenSSL 3.0's x509 cannot date a certificate in the past; its ca command can.
      const db = join(this.dir, `${base}.db`);
      writeFileSync(db, '');
      writeFileSync(`${db}.serial`, `${(this.serial++).toString(16).padStart(2, '0')}\n`);
      const cnf = join(this.dir, `${base}.cnf`);
      writeFileSync(
        cnf,
        [
          '[ca]',
          'default_ca = test',
          '[test]',
          `database = ${db}`,
          `new_certs_dir = ${this.dir}`,
          `serial = ${db}.serial`,
          'default_md = sha256',
          'policy = any',
          'unique_subject = no',
          'copy_extensions = none',
          '[any]',
          'commonName = supplied',
        ].join('\n'),
      );
      this.openssl([
        'ca',
        '-batch',
        '-config',
        cnf,
        '-in',
        csr,
        '-cert',
        ca.certFile,
        '-keyfile',
        ca.keyFile,
        '-extfile',
        ext,
        '-startdate',
        '20200101000000Z',
        '-enddate',
        '20200102000000Z',
        '-notext',
        '-out',
        out,
      ]);
    }
    return this.pair(base);
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
