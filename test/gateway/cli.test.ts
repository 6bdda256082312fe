// The netloom-gateway command and `npm start`: configuration checks, a gateway with a plugin from the command
// line, and a SIGTERM to the process that started it draining and exiting with nothing left behind
// (`timeout 20 npm start` used to leave the gateway running after npm was gone).
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers.ts';
import { echoHandler, httpUpstream, send, type TestUpstream, waitUntil } from './support.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'netloom-gateway.js');
const PLUGIN = join(ROOT, 'examples', 'gateway-plugin', 'api-key.ts');

function tempFile(name: string, text: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'netloom-cli-')), name);
  writeFileSync(file, text);
  return file;
}

/** Runs a child and collects its output; resolves on exit (killed after `ms`). */
function run(cmd: string, args: string[], ms = 20_000) {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '', code: null as number | null, signal: null as string | null };
  child.stdout!.on('data', (d: Buffer) => {
    out.stdout += d;
  });
  child.stderr!.on('data', (d: Buffer) => {
    out.stderr += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  const exited = new Promise<typeof out>((resolve) =>
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      out.code = code;
      out.signal = signal;
      resolve(out);
    }),
  );
  return { child, out, exited };
}

/** Processes whose command line contains `text` (other than this test's own). */
function processesWith(text: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', text], { encoding: 'utf8' })
      .split('\n')
      .filter((pid) => pid !== '' && Number(pid) !== process.pid);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', () => resolve(true));
  });
}

const node = (args: string[]) => run(process.execPath, ['--conditions=netloom-source', BIN, ...args]);

function yaml(upstream: string, port: number, filters = ''): string {
  return `listeners:\n  - address: 127.0.0.1:${port}\n    loops: 2\nupstreams:\n  app:\n    targets:\n      - address: ${upstream}\nroutes:\n  - name: private\n    match: { path: /private }\n    upstream: app\n${filters}  - name: public\n    match: { path: / }\n    upstream: app\n`;
}

const API_KEY = '    filters:\n      - { name: api-key, keys: ["k-0123456789abcdef"] }\n';

describe('netloom-gateway', () => {
  let up: TestUpstream;
  before(async () => {
    up = await httpUpstream(echoHandler('app'));
  });
  after(() => up.close());

  test('--check: exit 0 for a valid configuration, 1 with every problem by path', async () => {
    const good = tempFile('good.yaml', yaml(up.address, 0, API_KEY));
    const ok = await node(['--check', '--config', good, '--plugins', PLUGIN]).exited;
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /valid \(1 plugin module\)/);
    const bad = tempFile('bad.yaml', yaml('127.0.0.1:99999', 0, API_KEY));
    const refused = await node(['--check', '--config', bad]).exited;
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /upstreams\.app\.targets\.0\.address: /);
    assert.match(refused.stderr, /routes\.0\.filters\.0\.name: no filter named "api-key"/);
    const usage = await node([]).exited;
    assert.equal(usage.code, 1);
    assert.match(usage.stderr, /^usage: netloom-gateway --config FILE/);
  });

  test('serves with a plugin from the command line; SIGTERM drains and exits 0', async () => {
    const port = await freePort();
    const file = tempFile('gateway.yaml', yaml(up.address, port, API_KEY));
    const gw = node(['--config', file, '--plugins', PLUGIN]);
    try {
      await waitUntil(() => gw.out.stdout.includes('listening on'), 15_000, 'the gateway to listen');
      assert.match(gw.out.stdout, new RegExp(`version 1 listening on 127\\.0\\.0\\.1:${port}`));
      assert.equal((await send(port, '/private/x')).status, 401);
      assert.equal(
        (await send(port, '/private/x', { headers: { 'x-api-key': 'k-0123456789abcdef' } })).status,
        200,
      );
      gw.child.kill('SIGTERM');
      const out = await gw.exited;
      assert.equal(out.code, 0, out.stderr);
      assert.ok(await refuses(port), 'the port is still open');
    } finally {
      gw.child.kill('SIGKILL');
    }
  });

  test('npm start: SIGTERM to npm ends the gateway too (no orphan)', async (t) => {
    const npmCli = process.env.npm_execpath;
    const [cmd, pre] = npmCli?.endsWith('.js') ? [process.execPath, [npmCli]] : ['npm', []];
    const [port, admin, user, video1, video2] = (await Promise.all(
      [1, 2, 3, 4, 5].map(() => freePort()),
    )) as [number, number, number, number, number];
    const dir = mkdtempSync(join(tmpdir(), 'netloom-npm-start-'));
    const file = join(dir, 'gateway.yaml');
    writeFileSync(
      file,
      `listeners:\n  - address: 127.0.0.1:${port}\nadmin:\n  address: 127.0.0.1:${admin}\nupstreams:\n  user:\n    targets:\n      - address: 127.0.0.1:${user}\n  video:\n    targets:\n      - address: 127.0.0.1:${video1}\n      - address: 127.0.0.1:${video2}\nroutes:\n  - name: user-api\n    match: { path: /api/v1/user }\n    upstream: user\n    rewrite: { stripPrefix: /api/v1 }\n  - name: video-api\n    match: { path: /api/v1/video }\n    upstream: video\n`,
    );
    const npm = run(cmd, [...pre, 'start', '--silent', '--', '--config', file], 30_000);
    t.after(() => {
      npm.child.kill('SIGKILL');
      for (const pid of processesWith(dir)) process.kill(Number(pid), 'SIGKILL');
    });
    await waitUntil(() => npm.out.stdout.includes(`listening ${port}`), 20_000, 'npm start to listen');
    assert.equal((await send(port, '/api/v1/user/1')).status, 200);
    assert.notEqual(processesWith(dir).length, 0, 'the gateway process is not found by its config path');
    (npm.child as ChildProcess).kill('SIGTERM');
    await npm.exited;
    await waitUntil(() => processesWith(dir).length === 0, 8000, 'no process left running the gateway').catch(
      () => assert.fail(`still running after npm exited: ${processesWith(dir).join(', ')}`),
    );
    assert.ok(await refuses(port), 'the gateway port is still open');
    assert.ok(await refuses(user), 'a demo service port is still open');
  });
});
