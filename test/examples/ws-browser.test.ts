// A real browser against examples/ws-echo (issue 14): Debian's chromium, headless, loads a page that opens a
// WebSocket (chromium offers permessage-deflate), exchanges text (ASCII, multi-byte UTF-8, 200 KB of
// compressible text) and binary messages (small, 1 MiB of random bytes), closes with a code, and posts what
// it saw to a report endpoint of this test. `.ci/run` installs chromium.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../../examples/ws-echo/main.ts', import.meta.url));
const CHROMIUM = process.env.NETLOOM_CHROMIUM ?? '/usr/bin/chromium';

/** The page: runs the exchanges in order and posts the outcome as JSON. */
function page(wsPort: number): string {
  return `<!doctype html><meta charset="utf-8"><title>netloom ws</title><script>
(async () => {
  const report = (r) => fetch('/report', { method: 'POST', body: JSON.stringify(r) });
  try {
    const ws = new WebSocket('ws://127.0.0.1:${wsPort}/');
    ws.binaryType = 'arraybuffer';
    const queue = [];
    let wake = null;
    ws.onmessage = (e) => { queue.push(e.data); if (wake) { wake(); wake = null; } };
    const next = async () => { while (queue.length === 0) await new Promise((r) => (wake = r)); return queue.shift(); };
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('error before open')); });
    const out = { extensions: ws.extensions, results: [] };
    const same = (a, b) => { if (a.byteLength !== b.byteLength) return false; const x = new Uint8Array(a), y = new Uint8Array(b); for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false; return true; };
    const texts = ['hello', 'żółć ✓ 𝄞 emoji 😀', 'room 42: '.repeat(22000)];
    for (const t of texts) { ws.send(t); const got = await next(); out.results.push({ kind: 'text', length: t.length, ok: got === t }); }
    const small = new Uint8Array([0, 1, 2, 253, 254, 255]).buffer;
    const big = new Uint8Array(1 << 20); for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
    for (const b of [small, big.buffer]) { ws.send(b); const got = await next(); out.results.push({ kind: 'binary', length: b.byteLength, ok: got instanceof ArrayBuffer && same(got, b) }); }
    const closed = new Promise((r) => (ws.onclose = (e) => r({ code: e.code, reason: e.reason, wasClean: e.wasClean })));
    ws.close(4000, 'done');
    out.close = await closed;
    await report(out);
  } catch (err) {
    await report({ error: String(err) });
  }
})();
</script>`;
}

test('headless chromium: WebSocket with permessage-deflate to examples/ws-echo, text and binary echoed, clean close', async (t) => {
  const echo = spawn(
    process.execPath,
    [...process.execArgv.filter((a) => a.startsWith('--conditions')), main, '--port', '0'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  t.after(() => echo.kill('SIGKILL'));
  const [line] = (await once(echo.stdout!, 'data')) as [Buffer];
  const match = /^listening (\d+)\n$/.exec(line.toString());
  assert.ok(match, `unexpected first line: ${line}`);

  let deliver: (report: Record<string, unknown>) => void = () => {};
  const reported = new Promise<Record<string, unknown>>((resolve) => (deliver = resolve));
  const site = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/page.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(Number(match[1])));
      return;
    }
    if (req.method === 'POST' && req.url === '/report') {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => {
        res.end('ok');
        deliver(JSON.parse(body) as Record<string, unknown>);
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  t.after(() => site.close());

  const profile = await mkdtemp(join(tmpdir(), 'netloom-chromium-'));
  t.after(() => rm(profile, { recursive: true, force: true }));
  const browser: ChildProcess = spawn(
    CHROMIUM,
    [
      '--headless=new',
      '--no-sandbox', // CI runs as root
      '--disable-gpu',
      '--no-first-run',
      '--disable-extensions',
      '--disable-background-networking',
      `--user-data-dir=${profile}`,
      `http://127.0.0.1:${(site.address() as AddressInfo).port}/page.html`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
  );
  let stderr = '';
  browser.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d).slice(-4000)));
  const failed = new Promise<never>((_, reject) => {
    browser.once('error', (err) => reject(new Error(`chromium did not start (${CHROMIUM}): ${err.message}`)));
    browser.once('exit', (code) =>
      reject(new Error(`chromium exited (${code}) before reporting:\n${stderr}`)),
    );
  });
  t.after(() => {
    try {
      process.kill(-browser.pid!, 'SIGKILL'); // its helper processes too
    } catch {
      // already gone
    }
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no report from chromium within 60 s:\n${stderr}`)), 60_000);
  });
  t.after(() => clearTimeout(timer));
  const report = (await Promise.race([reported, failed, timeout])) as {
    error?: string;
    extensions: string;
    results: { kind: string; length: number; ok: boolean }[];
    close: { code: number; reason: string; wasClean: boolean };
  };
  assert.equal(report.error, undefined);
  assert.match(report.extensions, /^permessage-deflate/);
  assert.deepEqual(
    report.results.map((r) => [r.kind, r.length, r.ok]),
    [
      ['text', 5, true],
      ['text', 'żółć ✓ 𝄞 emoji 😀'.length, true],
      ['text', 'room 42: '.length * 22000, true],
      ['binary', 6, true],
      ['binary', 1 << 20, true],
    ],
  );
  assert.deepEqual(report.close, { code: 4000, reason: 'done', wasClean: true });
});
