// The ws-echo example's contract (what a conformance runner drives): `--port P`, `listening P` once ready,
// an echo of every message at ws://127.0.0.1:P/ with permessage-deflate, SIGTERM exits 0.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocketClient from 'ws';

const main = fileURLToPath(new URL('../../examples/ws-echo/main.ts', import.meta.url));

test('ws-echo example: listening line, text and binary echoed on 2 loops (compressed), SIGTERM exits 0', async () => {
  const child = spawn(
    process.execPath,
    [...process.execArgv.filter((a) => a.startsWith('--conditions')), main, '--port', '0', '--loops', '2'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    const match = /^listening (\d+)\n$/.exec(line.toString());
    assert.ok(match, `unexpected first line: ${line}`);
    for (let i = 0; i < 4; i++) {
      const c = new WebSocketClient(`ws://127.0.0.1:${match[1]}/`, { perMessageDeflate: true });
      await once(c, 'open');
      assert.match(String(c.extensions), /permessage-deflate/);
      const text = `message ${i} `.repeat(500);
      c.send(text);
      const [got] = (await once(c, 'message')) as [Buffer];
      assert.equal(got.toString(), text);
      c.send(Buffer.from([1, 2, 3]));
      const [bin, isBinary] = (await once(c, 'message')) as [Buffer, boolean];
      assert.equal(isBinary, true);
      assert.deepEqual([...bin], [1, 2, 3]);
      c.close();
      await once(c, 'close');
    }
    // A message past the default outbound limit (16 MiB) is echoed too: the example allows 64 MiB.
    const c = new WebSocketClient(`ws://127.0.0.1:${match[1]}/`);
    await once(c, 'open');
    const big = Buffer.alloc(20 * 1024 * 1024, 7);
    c.send(big);
    const [echoed] = (await once(c, 'message')) as [Buffer];
    assert.equal(echoed.length, big.length);
    c.close();
    await once(c, 'close');
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
  } finally {
    child.kill('SIGKILL');
  }
});
