// maxBackpressure below the loop's highWaterMark (uWebSockets' default is 64 KiB): send goes from 'sent'
// straight to 'dropped' (never 'buffered'), and drain never comes, so a sender waiting for drain hangs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SendStatus } from 'netloom/websocket';
import { frame, rawSession } from '../support.ts';
import { sleep, start } from './helpers.ts';

test('maxBackpressure 64 KiB: a burst to an idle, reading client is dropped with no buffered and no drain', async (t) => {
  const statuses: SendStatus[] = [];
  let drained = 0;
  const s = await start({
    maxBackpressure: 64 * 1024,
    message(ws) {
      const chunk = Buffer.alloc(8 * 1024, 1);
      for (let i = 0; i < 64; i++) {
        const st = ws.send(chunk);
        if (statuses.at(-1) !== st) statuses.push(st);
        if (st === 'dropped') break;
      }
    },
    drain() {
      drained++;
    },
  });
  t.after(() => s.stop());
  const r = await rawSession(s.port);
  t.after(() => r.socket.destroy());
  r.send(frame(true, 1, 'go'));
  await sleep(600);
  // The socket is idle and the client reads: a drop must at least be preceded by 'buffered' (and drain
  // follow), else a sender that waits for drain after a drop waits forever. (With the kernel taking every
  // write at once, nothing need be dropped at all.)
  const dropped = statuses.indexOf('dropped');
  if (dropped !== -1) {
    assert.equal(statuses[dropped - 1], 'buffered', `statuses ${statuses}`);
    assert.ok(drained >= 1, 'drain after a drop');
  }
  assert.notDeepEqual(statuses, ['sent', 'dropped']);
});
