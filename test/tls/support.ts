// Clients for TLS tests: Debian's openssl s_client and curl, run asynchronously (a one-loop engine shares
// the test's thread), and a raw socket for bytes that are not TLS.
import { spawn } from 'node:child_process';
import net from 'node:net';

export interface ClientResult {
  stdout: string;
  stderr: string;
  code: number | null;
}

/** Runs a command with `input` on stdin; resolves when it exits (killed after `timeoutMs`). */
export function run(cmd: string, args: string[], input = '', timeoutMs = 5000): Promise<ClientResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('latin1')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

export interface SClient {
  /** The handler's JSON answer (see test/fixtures/tls-handler.ts), or null when none came. */
  answer: {
    loop: number;
    servername: string | null;
    alpn: string | null;
    resumed: boolean;
    authorized: boolean;
    peer: string | null;
  } | null;
  /** `New` or `Reused` (s_client's own account of the handshake), or null when it failed. */
  session: 'New' | 'Reused' | null;
  /** The subject CN of the certificate the server sent. */
  servedCN: string | null;
  /** Whether s_client verified the server's certificate against `-CAfile`. */
  verified: boolean;
  out: string;
}

/** `openssl s_client` to 127.0.0.1:`port`, sending one line; `args` adds options (-servername, -sess_in...). */
export async function sClient(port: number, args: string[], line = 'hello'): Promise<SClient> {
  const r = await run(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${port}`, '-ign_eof', ...args],
    `${line}\n`,
  );
  const out = r.stdout + r.stderr;
  const json = /\{"loop".*\}/.exec(r.stdout);
  const session = /^(New|Reused), /m.exec(r.stdout);
  const cn = /^subject=.*?CN\s*=\s*([^,\n/]+)/m.exec(r.stdout);
  return {
    answer: json === null ? null : JSON.parse(json[0]),
    session: session === null ? null : (session[1] as 'New' | 'Reused'),
    servedCN: cn === null ? null : cn[1]!.trim(),
    verified: /Verify return code: 0 \(ok\)/.test(r.stdout),
    out,
  };
}

/** Sends `bytes` on a plain TCP connection; resolves with what came back and when the server closed. */
export function plain(
  port: number,
  bytes: string | Buffer,
  waitMs = 3000,
): Promise<{ text: string; closedAfter: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => finish(), waitMs);
    const finish = () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closedAfter: Date.now() - started });
    };
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('close', finish);
    s.on('error', () => {});
    s.on('connect', () => {
      if (bytes.length > 0) s.write(bytes);
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
