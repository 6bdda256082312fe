// RFC 6455 §7.1.5: no close frame received => the close code is 1006. Our close() then a close timeout.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, rawSession, within } from '../support.ts';
import { sleep, start } from './helpers.ts';

test('close timeout without the peer answering reports 1006, not our own code', async (t) => {
  let got: number | undefined;
  const s = await start({
    closeTimeout: 200,
    message(ws) {
      ws.close(4000, 'bye');
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
  await sleep(100);
  assert.equal(got, 1006);
});
