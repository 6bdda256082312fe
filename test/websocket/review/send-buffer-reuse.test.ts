// send(buf) of >= 16 KiB keeps a reference to the caller's buffer until the end of the turn: reusing the
// buffer right after send() (the message "went", send said 'sent') corrupts the message on the wire.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocketClient from 'ws';
import { sleep, start } from './helpers.ts';

test('a buffer reused after send(): the first message keeps its bytes', async (t) => {
  const s = await start({
    message(ws) {
      const buf = Buffer.alloc(20_000, 0x61); // 'a'
      assert.equal(ws.send(buf), 'sent');
      buf.fill(0x62); // 'b': the caller's buffer is its own again
      ws.send(buf);
    },
  });
  t.after(() => s.stop());
  const c = new WebSocketClient(`ws://127.0.0.1:${s.port}/`);
  t.after(() => c.terminate());
  const got: Buffer[] = [];
  c.on('message', (d: Buffer) => got.push(d));
  await new Promise((r) => c.once('open', r));
  c.send('go');
  await sleep(300);
  assert.equal(got.length, 2);
  assert.equal(got[0]![0], 0x61, `first message starts with ${String.fromCharCode(got[0]![0]!)}`);
  assert.equal(got[1]![0], 0x62);
});
