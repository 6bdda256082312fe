import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { waitUntil } from '../support.ts';
import {
  gatewayFor,
  parseFrames,
  rawClient,
  rawWsUpstream,
  serverFrame,
  switching,
  wsUpstream,
} from './helpers.ts';

describe('ws-review: shutdown', () => {
  test('stop while the upstream is mid-frame: the client gets the rest of the frame, then 1001 (not a cut frame)', async (t) => {
    const up = await rawWsUpstream((socket, s) => {
      const f = serverFrame(0x2, Buffer.alloc(1000, 5));
      socket.write(Buffer.concat([Buffer.from(switching(s.key), 'latin1'), f.subarray(0, 400)]));
      setTimeout(() => !socket.destroyed && socket.write(f.subarray(400)), 600);
    });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { websocket: { closeTimeout: 2000 } });
    const c = await rawClient(gw.port);
    t.after(() => c.socket.destroy());
    await waitUntil(() => c.received().length >= 300, 2000, 'the first part');
    const started = Date.now();
    const stopping = gw.stop(3000);
    await waitUntil(() => c.ended(), 5000, 'client closed');
    const took = Date.now() - started;
    await stopping;
    const { frames, rest } = parseFrames(c.received());
    assert.equal(rest, 0, `a frame cut after ${took} ms: ${c.received().length} bytes received`);
    assert.equal(frames[0]!.payload.length, 1000);
    assert.equal(frames[1]!.opcode, 0x8);
    assert.equal(frames[1]!.payload.readUInt16BE(0), 1001);
  });

  test('stop: a client slow to answer the 1001 gets its closeTimeout (within the grace), not ~100 ms', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { websocket: { closeTimeout: 1500 } });
    const c = await rawClient(gw.port);
    t.after(() => c.socket.destroy());
    const started = Date.now();
    const stopping = gw.stop(4000);
    await waitUntil(
      () => parseFrames(c.received()).frames.some((f) => f.opcode === 0x8),
      2000,
      'close frame',
    );
    await waitUntil(() => c.ended(), 6000, 'client cut');
    const took = Date.now() - started;
    await stopping;
    assert.ok(took >= 1200, `cut after ${took} ms, closeTimeout is 1500`);
  });
});
