// Re-entrancy inside message(): terminate(), close() then more frames in the same read.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, rawSession, within } from '../support.ts';
import { sleep, start } from './helpers.ts';

test('terminate() inside message: no more messages handled from the same read', async (t) => {
  const seen: string[] = [];
  const s = await start({
    message(ws, m) {
      seen.push(String(m));
      ws.terminate();
    },
  });
  t.after(() => s.stop());
  const r = await rawSession(s.port);
  t.after(() => r.socket.destroy());
  r.send(frame(true, 1, 'a'), frame(true, 1, 'b'), frame(true, 9, 'p'));
  await within(r.closed, 2000);
  assert.deepEqual(seen, ['a']);
});

test('close() inside message then the peer answers: close told once with the code', async (t) => {
  const seen: string[] = [];
  const closes: number[] = [];
  const s = await start({
    message(ws, m) {
      seen.push(String(m));
      ws.close(1000);
      ws.send('after');
    },
    close(_ws, code) {
      closes.push(code);
    },
  });
  t.after(() => s.stop());
  const r = await rawSession(s.port);
  t.after(() => r.socket.destroy());
  const cl = Buffer.from([0x03, 0xe8]);
  r.send(frame(true, 1, 'a'), frame(true, 1, 'b'), frame(true, 8, cl));
  await within(r.closed, 2000);
  await sleep(50);
  assert.deepEqual(seen, ['a']);
  assert.deepEqual(closes, [1000]);
  const fr = r.frames();
  assert.equal(fr.length, 1);
  assert.equal(fr[0]!.opcode, 8);
});
