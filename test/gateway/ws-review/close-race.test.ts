import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deadAddress, sleep, waitUntil } from '../support.ts';
import {
  frame,
  gatewayFor,
  nextMessage,
  openWs,
  parseFrames,
  rawClient,
  rawWsUpstream,
  switching,
  wsUpstream,
} from './helpers.ts';

describe('ws-review: close races', () => {
  test('the idle limit fires while the client close frame is half through: the upstream still gets the whole close frame', async (t) => {
    const up = await rawWsUpstream((socket, s) => {
      socket.write(switching(s.key));
    });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { websocket: { idleTimeout: 300, closeTimeout: 3000 } });
    t.after(() => gw.stop());
    const c = await rawClient(gw.port);
    t.after(() => c.socket.destroy());
    const close = frame(0x8, Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from('client bye')]));
    c.socket.write(close.subarray(0, 9)); // header, mask, 3 payload bytes
    await sleep(600); // the idle limit passes with the client's close frame in progress
    c.socket.write(close.subarray(9));
    await sleep(300);
    const got = up.conns[0]!.data;
    const { frames, rest } = parseFrames(got);
    assert.equal(rest, 0, `the upstream holds a cut frame: ${got.length} of ${close.length} bytes`);
    assert.equal(frames[0]!.opcode, 0x8);
    assert.equal(frames[0]!.payload.readUInt16BE(0), 1000);
  });

  test('an upgrade retried on the second target when the first refuses connections', async (t) => {
    const dead = await deadAddress();
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor([dead, up.address], {}, {}, { retries: 1 });
    t.after(() => gw.stop());
    for (let i = 0; i < 2; i++) {
      const ws = await openWs(`ws://127.0.0.1:${gw.port}/`);
      ws.send('r');
      assert.equal((await nextMessage(ws)).toString(), 'r');
      ws.terminate();
    }
  });
});
void waitUntil;
