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
    'README.md',
    'LICENSE',
    'package.json',
  ]) {
    assert.ok(files.has(f), `${f} is not in the package`);
  }
  for (const f of files)
    assert.doesNotMatch(f, /^(test|bench|examples|core|protocols|gateway)\//, `${f} shipped`);
});
