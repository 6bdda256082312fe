// The examples speak HTTPS with --cert and --key: the hello server, and the reference gateway (its first
// listener), each checked with curl against the test CA, and each stopping on SIGTERM with exit code 0.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers.ts';
import { TestPki } from './certs.ts';
import { run, sleep } from './support.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('example', ['example.test']);

/** Starts `script` with Node and the source condition; resolves once it printed `listening <port>`. */
async function startExample(script: string, args: string[]) {
  const child = spawn(process.execPath, ['--conditions=netloom-source', join(ROOT, script), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 15_000;
  while (!/listening \d+/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${script} did not start:\n${out}`);
    await sleep(50);
  }
  return { child, exited, port: Number(/listening (\d+)/.exec(out)![1]) };
}

function curl(port: number, path: string) {
  return run('curl', [
    '-s',
    '--cacert',
    pki.ca.certFile,
    '--resolve',
    `example.test:${port}:127.0.0.1`,
    `https://example.test:${port}${path}`,
  ]);
}

test('examples/hello --cert --key serves HTTPS', async (t) => {
  const ex = await startExample('examples/hello/main.ts', [
    '--port',
    '0',
    '--cert',
    cert.certFile,
    '--key',
    cert.keyFile,
  ]);
  t.after(() => ex.child.kill('SIGKILL'));
  const r = await curl(ex.port, '/');
  assert.equal(r.stdout, 'Hello, World!', r.stderr);
  ex.child.kill('SIGTERM');
  assert.equal(await ex.exited, 0);
});

test('examples/gateway --cert --key puts HTTPS on the first listener', async (t) => {
  const [port, admin, user, video1, video2] = (await Promise.all([1, 2, 3, 4, 5].map(() => freePort()))) as [
    number,
    number,
    number,
    number,
    number,
  ];
  const file = join(mkdtempSync(join(tmpdir(), 'netloom-example-')), 'gateway.yaml');
  writeFileSync(
    file,
    `listeners:\n  - address: 127.0.0.1:${port}\nadmin:\n  address: 127.0.0.1:${admin}\nupstreams:\n  user:\n    targets:\n      - address: 127.0.0.1:${user}\n  video:\n    targets:\n      - address: 127.0.0.1:${video1}\n      - address: 127.0.0.1:${video2}\nroutes:\n  - name: user-api\n    match: { path: /api/v1/user }\n    upstream: user\n    rewrite: { stripPrefix: /api/v1 }\n`,
  );
  const ex = await startExample('examples/gateway/main.ts', [
    '--config',
    file,
    '--cert',
    cert.certFile,
    '--key',
    cert.keyFile,
  ]);
  t.after(() => ex.child.kill('SIGKILL'));
  const r = await curl(port, '/api/v1/user/42');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /42/);
  ex.child.kill('SIGTERM');
  assert.equal(await ex.exited, 0);
});
