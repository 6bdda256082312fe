// The echo example's contract: `listening P` once ready, echoes, exits 0 on SIGTERM after draining.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect, echoOver, prng, randomBytes } from '../helpers.ts';

const main = fileURLToPath(new URL('../../examples/echo/main.ts', import.meta.url));

test('echo example: listening line, echo on 2 loops, SIGTERM exits 0', async () => {
  const child = spawn(
    process.execPath,
    [...process.execArgv.filter((a) => a.startsWith('--conditions')), main, '--port', '0', '--loops', '2'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  try {
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    const match = /^listening (\d+)\n$/.exec(line.toString());
    assert.ok(match, `unexpected first line: ${line}`);
    const port = Number(match[1]);
    const payload = randomBytes(prng(3), 256 * 1024);
    const socket = await connect({ port });
    socket.write('x'); // accepted and served before the signal
    await once(socket, 'data');
    const echoed = echoOver(socket, payload, prng(4));
    child.kill('SIGTERM'); // while the echo is in flight
    assert.ok((await echoed).equals(payload));
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
  } finally {
    child.kill('SIGKILL');
  }
});
