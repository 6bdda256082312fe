// Gateway.stop stops the DNS discovery source, but DnsDiscovery's stop function only clears its timer: the
// query in flight (resolver timeout 2 s, 2 tries) is not cancelled (Resolver.cancel), and keeps a program
// that stopped its gateway alive for seconds when the resolver does not answer.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./dns-stop-child.ts', import.meta.url));

test('a stopped gateway with DNS discovery lets the process exit at once', async () => {
  const child = spawn(process.execPath, ['--conditions=netloom-source', CHILD], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d;
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d;
  });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  assert.equal(code, 0, out);
  const lived = Number(/lived (\d+) ms after stop/.exec(out)?.[1]);
  assert.ok(lived < 1000, `the process lived ${lived} ms after gateway.stop()`);
});
