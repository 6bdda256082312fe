// maxPayload bounds a message's payload octets, not what holding it costs: each fragment is kept as its own
// Buffer, so a message of 1-octet fragments (7 octets each on the wire) costs ~100x maxPayload in heap.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, rawSession } from '../support.ts';
import { sleep, start } from './helpers.ts';

test('a message of 1-octet fragments stays within a small multiple of maxPayload in memory', async (t) => {
  const maxPayload = 1024 * 1024;
  const s = await start({ maxPayload, message() {} });
  t.after(() => s.stop());
  const r = await rawSession(s.port);
  t.after(() => r.socket.destroy());
  globalThis.gc?.();
  const before = process.memoryUsage();
  const n = maxPayload - 1; // one short: the message never ends, every fragment is held
  const first = frame(false, 2, 'x');
  const cont = frame(false, 0, 'x');
  const batch = Buffer.concat(Array.from({ length: 4096 }, () => cont));
  r.send(first);
  for (let i = 0; i < Math.floor(n / 4096); i++) {
    if (!r.socket.write(batch)) await new Promise((res) => r.socket.once('drain', res));
  }
  await sleep(500);
  globalThis.gc?.();
  const after = process.memoryUsage();
  const grew = after.heapUsed + after.arrayBuffers - (before.heapUsed + before.arrayBuffers);
  console.log(`held ${(grew / 2 ** 20).toFixed(1)} MiB for a ${maxPayload / 2 ** 20} MiB message`);
  assert.ok(grew < 8 * maxPayload, `grew ${(grew / 2 ** 20).toFixed(1)} MiB`);
});
