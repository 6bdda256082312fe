// The ws-broadcast example: every WebSocket joins the room; a message reaches every other member (on both
// loops), never its sender.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocketClient from 'ws';

const main = fileURLToPath(new URL('../../examples/ws-broadcast/main.ts', import.meta.url));

test('ws-broadcast example: 6 members on 2 loops, each message reaches the 5 others and not its sender', async (t) => {
  const child = spawn(
    process.execPath,
    [...process.execArgv.filter((a) => a.startsWith('--conditions')), main, '--port', '0', '--loops', '2'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => child.kill('SIGKILL'));
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const port = /^listening (\d+)\n$/.exec(line.toString())?.[1];
  assert.ok(port, `unexpected first line: ${line}`);
  const members = await Promise.all(
    Array.from({ length: 6 }, async () => {
      const c = new WebSocketClient(`ws://127.0.0.1:${port}/`);
      await once(c, 'open');
      const got: string[] = [];
      c.on('message', (d: Buffer) => got.push(d.toString()));
      return { c, got };
    }),
  );
  await new Promise((r) => setTimeout(r, 100)); // the subscriptions reach the other loop
  members[0]!.c.send('from 0');
  members[3]!.c.send('from 3');
  const until = Date.now() + 5000;
  while (members.some((m, i) => m.got.length < (i === 0 || i === 3 ? 1 : 2)) && Date.now() < until)
    await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 100)); // nothing more arrives
  members.forEach((m, i) => {
    const expected = [i !== 0 ? 'from 0' : null, i !== 3 ? 'from 3' : null].filter((x) => x !== null);
    assert.deepEqual([...m.got].sort(), expected.sort(), `member ${i}`);
  });
  for (const m of members) m.c.close();
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
});
