// `npm run profile -- hello` (issue 16): a real 0x run of the hello example under wrk leaves a
// self-contained flamegraph and a top list whose netloom frames are the HTTP/1.1 parser and write path.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('npm run profile -- hello leaves flamegraph.html and top.txt naming the parser and write path', async (t) => {
  if (spawnSync('wrk', ['--version']).error !== undefined) return t.skip('wrk is not installed');
  const out = mkdtempSync(join(tmpdir(), 'netloom-profile-'));
  const child = spawn(
    process.execPath,
    [
      ...process.execArgv.filter((a) => a.startsWith('--conditions')),
      join(ROOT, 'bench/profile.ts'),
      'hello',
      '--seconds',
      '2',
      '--out',
      out,
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let text = '';
  child.stdout.on('data', (d: Buffer) => {
    text += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    text += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 0, text);
  const html = join(out, 'flamegraph.html');
  assert.ok(existsSync(html), text);
  const page = readFileSync(html, 'utf8');
  assert.ok(page.length > 100_000 && page.includes('<html'), 'a self-contained page');
  assert.ok(!page.includes('src="http'), 'no remote scripts');
  const top = readFileSync(join(out, 'top.txt'), 'utf8');
  const ours = top.slice(top.indexOf("netloom's own functions"));
  assert.match(ours, /protocols\/http1\/(head|response|exchange)\.ts/, top);
  assert.match(ours, /core\/conn\.ts/, top);
  assert.match(top, /Requests\/sec/, 'the load is reported');
  assert.deepEqual(
    readdirSync(out).filter((f) => f.startsWith('isolate-')),
    [],
    'the raw tick logs are removed',
  );
});
