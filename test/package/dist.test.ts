// The package as a consumer gets it: `npm run build` output, imported through package.json's exports
// without the sources (no netloom-source condition), on this Node (the one `engines` names), with loops on
// worker threads; and `npm pack` ships what those exports point at and nothing of the tests.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
let consumer = '';

before(() => {
  rmSync(join(ROOT, 'dist'), { recursive: true, force: true });
  execFileSync(process.execPath, [TSC, '-p', join(ROOT, 'tsconfig.build.json')], {
    cwd: ROOT,
    stdio: 'pipe',
  });
  consumer = mkdtempSync(join(tmpdir(), 'netloom-consumer-'));
  mkdirSync(join(consumer, 'node_modules'));
  symlinkSync(ROOT, join(consumer, 'node_modules', 'netloom'), 'dir');
  symlinkSync(join(ROOT, 'node_modules', 'zod'), join(consumer, 'node_modules', 'zod'), 'dir');
});
after(() => rmSync(consumer, { recursive: true, force: true }));

test('package.json names only the Node line CI runs', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    engines: { node: string };
    devDependencies: { node: string };
  };
  const [major] = process.versions.node.split('.');
  assert.equal(pkg.devDependencies.node, process.versions.node, 'tests run on the node devDependency');
  assert.equal(pkg.engines.node, `>=${process.versions.node} <${Number(major) + 1}`);
});

test('a consumer of dist/ serves HTTP on two loops through the public entry points', async () => {
  writeFileSync(
    join(consumer, 'handler.mjs'),
    `import { server } from 'netloom/http1';
     export default server((req, res) => res.header('content-type', 'text/plain').end('dist ' + req.path));`,
  );
  writeFileSync(
    join(consumer, 'main.mjs'),
    `import { serve } from 'netloom';
     const engine = await serve(new URL('./handler.mjs', import.meta.url), { loops: 2 });
     const answers = [];
     for (let i = 0; i < 4; i++) answers.push(await (await fetch('http://127.0.0.1:' + engine.port + '/x' + i)).text());
     console.log(JSON.stringify({ answers, loops: engine.loops, io: engine.stats().io.read }));
     await engine.stop();`,
  );
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['main.mjs'], { cwd: consumer, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`consumer exited ${code}: ${stderr}`));
    });
  });
  const result = JSON.parse(out.trim().split('\n').pop()!) as { answers: string[]; loops: number };
  assert.deepEqual(result.answers, ['dist /x0', 'dist /x1', 'dist /x2', 'dist /x3']);
  assert.equal(result.loops, 2);
});

/** Runs node in the consumer directory; resolves with stdout once it exits 0. */
function runConsumer(args: string[], ms = 20_000): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: consumer, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`consumer exited ${code}: ${stderr}`));
    });
  });
}

test('a filter package written against dist netloom/gateway runs in a gateway with two loops', async () => {
  writeFileSync(
    join(consumer, 'filters.mjs'),
    `import { defineFilter } from 'netloom/gateway';
     import { z } from 'zod';
     export const stamp = defineFilter({
       name: 'stamp',
       settings: z.object({ value: z.string().min(1) }).strict(),
       create: ({ value }, { loop }) => ({
         onRequest(ctx) { ctx.respond(200, { value, loop: loop.index, path: ctx.path }); return false; },
       }),
     });`,
  );
  writeFileSync(
    join(consumer, 'gateway.mjs'),
    `import http from 'node:http';
     import { startGateway, StaticConfigSource, ConfigError } from 'netloom/gateway';
     // A new connection per request (agent: false), so the kernel spreads them over the loops.
     const get = (port, path) => new Promise((resolve, reject) => {
       http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
         let body = '';
         res.on('data', (d) => { body += d; });
         res.on('end', () => resolve(JSON.parse(body)));
       }).on('error', reject);
     });
     const config = (value) => ({
       listeners: [{ address: '127.0.0.1:0', loops: 2 }],
       upstreams: { none: { targets: [{ address: '127.0.0.1:9' }] } },
       routes: [{ name: 'r', match: { path: '/' }, upstream: 'none', filters: [{ name: 'stamp', value }] }],
     });
     const plugins = [new URL('./filters.mjs', import.meta.url)];
     let refused = '';
     try { await startGateway({ source: new StaticConfigSource(config('')), plugins, watch: false }); }
     catch (err) { refused = err instanceof ConfigError ? err.problems.join() : 'not a ConfigError: ' + err; }
     const gw = await startGateway({ source: new StaticConfigSource(config('v1')), plugins, watch: false });
     const answers = [];
     for (let i = 0; i < 16; i++) answers.push(await get(gw.port(), '//a/./b'));
     await gw.stop(1000);
     console.log(JSON.stringify({ refused, answers }));`,
  );
  const out = await runConsumer(['gateway.mjs']);
  const result = JSON.parse(out.trim().split('\n').pop()!) as {
    refused: string;
    answers: { value: string; loop: number; path: string }[];
  };
  assert.match(result.refused, /^routes\.0\.filters\.0\.value: /);
  // The path arrives normalised; the filter answered on every loop.
  assert.deepEqual(new Set(result.answers.map((a) => `${a.value} ${a.path}`)), new Set(['v1 /a/b']));
  assert.deepEqual([...new Set(result.answers.map((a) => a.loop))].sort(), [0, 1], 'both loops answered');
});

test('the published declarations hold the public API and no internals', () => {
  const gateway = readFileSync(join(ROOT, 'dist', 'gateway', 'index.d.ts'), 'utf8');
  for (const name of [
    'startGateway',
    'defineFilter',
    'validateConfig',
    'loadConfig',
    'SharedState',
    'CompletionRecord',
  ])
    assert.match(gateway, new RegExp(`\\b${name}\\b`), `${name} is not exported`);
  for (const name of ['GatewayLoop', 'ProxyCall', 'TargetPool', 'TargetRegistry'])
    assert.doesNotMatch(gateway, new RegExp(`\\b${name}\\b`), `${name} is exported`);
  // @internal members are stripped from the declarations.
  const conn = readFileSync(join(ROOT, 'dist', 'core', 'conn.d.ts'), 'utf8');
  assert.match(conn, /peek\(/);
  assert.doesNotMatch(conn, /settleInbound|beginTraffic|receive\(/);
});

test('npm pack ships dist with declarations, README and LICENSE, and no sources or tests', () => {
  const args = ['pack', '--dry-run', '--json', '--ignore-scripts'];
  // Under `npm test`, the npm that runs us; by hand, the one on PATH.
  const cli = process.env.npm_execpath;
  const [cmd, argv] = cli?.endsWith('.js') ? [process.execPath, [cli, ...args]] : ['npm', args];
  const text = execFileSync(cmd, argv, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const [pack] = JSON.parse(text) as [{ files: { path: string }[] }];
  const files = new Set(pack.files.map((f) => f.path));
  for (const f of [
    'dist/core/index.js',
    'dist/core/index.d.ts',
    'dist/core/loop-worker.js',
    'dist/protocols/http1/index.js',
    'dist/protocols/http1/index.d.ts',
    'dist/gateway/index.js',
    'dist/gateway/index.d.ts',
    'dist/gateway/cli.js',
    'dist/gateway/handler.js',
    'bin/netloom-gateway.js',
    'README.md',
    'LICENSE',
    'package.json',
  ]) {
    assert.ok(files.has(f), `${f} is not in the package`);
  }
  for (const f of files)
    assert.doesNotMatch(f, /^(test|bench|examples|core|protocols|gateway)\//, `${f} shipped`);
});
