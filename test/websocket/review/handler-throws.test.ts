// A message handler that throws: the client should get a close frame (1011), and close() should be told.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, rawSession, within } from '../support.ts';
import { sleep, start } from './helpers.ts';

test('a throwing message handler: close 1011 to the client, close handler told', async (t) => {
  let got: number | undefined;
  const s = await start({
    message() {
      throw new Error('boom');
    },
    close(_ws, code) {
      got = code;
    },
  });
  t.after(() => s.stop());
  const r = await rawSession(s.port);
  t.after(() => r.socket.destroy());
  r.send(frame(true, 1, 'x'));
  await within(r.closed, 2000);
  await sleep(50);
  const fr = r.frames();
  console.log('frames', fr, 'close code', got, 'closed', r.isClosed());
  assert.equal(fr.find((f) => f.opcode === 8)?.payload.readUInt16BE(0), 1011);
});
