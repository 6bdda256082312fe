import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep, waitUntil } from '../support.ts';
import {
  frame,
  gatewayFor,
  parseFrames,
  rawClient,
  rawWsUpstream,
  serverFrame,
  switching,
  wsUpstream,
} from './helpers.ts';

describe('ws-review: frames', () => {
  test('a client breaking the rules while the upstream is mid-frame: the client gets the whole frame, then 1002', async (t) => {
    const up = await rawWsUpstream((socket, s) => {
      const f = serverFrame(0x2, Buffer.alloc(1000, 9));
      socket.write(Buffer.concat([Buffer.from(switching(s.key), 'latin1'), f.subarray(0, 300)]));
      setTimeout(() => !socket.destroyed && socket.write(f.subarray(300)), 500);
    });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const c = await rawClient(gw.port);
    t.after(() => c.socket.destroy());
    await sleep(100);
    c.socket.write(frame(0x1, Buffer.from('x'), { mask: false }));
    await waitUntil(() => parseFrames(c.received()).frames.length >= 2, 3000, 'frame and close');
    const frames = parseFrames(c.received()).frames;
    assert.equal(frames[0]!.payload.length, 1000);
    assert.equal(frames[1]!.opcode, 0x8);
    assert.equal(frames[1]!.payload.readUInt16BE(0), 1002);
    // What the upstream got: a masked 1001 close, and nothing of the bad frame.
    const upFrames = parseFrames(up.conns[0]!.data).frames;
    assert.equal(upFrames.length, 1);
    assert.equal(upFrames[0]!.opcode, 0x8);
    assert.ok(upFrames[0]!.masked);
    assert.equal(upFrames[0]!.payload.readUInt16BE(0), 1001);
  });

  test('idle timeout does not fire while the gateway is still delivering a message to a slow reader', async (t) => {
    const big = 8 * 1024 * 1024;
    const up = await rawWsUpstream((socket, s) => {
      socket.write(
        Buffer.concat([Buffer.from(switching(s.key), 'latin1'), serverFrame(0x2, Buffer.alloc(big, 1))]),
      );
    });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { websocket: { idleTimeout: 400 } });
    t.after(() => gw.stop());
    const c = await rawClient(gw.port);
    t.after(() => c.socket.destroy());
    // Read slowly: pause 250 ms, read a bit, ... (never quiet for 400 ms as far as bytes moving goes)
    const start = Date.now();
    while (Date.now() - start < 2500 && c.received().length < big + 10) {
      c.socket.pause();
      await sleep(250);
      c.socket.resume();
      await sleep(20);
    }
    c.socket.resume();
    await waitUntil(() => c.received().length >= big + 10, 10_000, 'the whole message');
    const frames = parseFrames(c.received()).frames;
    assert.equal(frames[0]!.payload.length, big);
    assert.equal(
      frames.length,
      1,
      `then: ${frames.slice(1).map((f) => `${f.opcode}:${f.payload.length >= 2 ? f.payload.readUInt16BE(0) : ''}`)}`,
    );
  });

  test('a 101 with a __proto__ field reaches the client with that field', async (t) => {
    const up = await rawWsUpstream((socket, s) => {
      socket.write(switching(s.key, '__proto__: polluted\r\nx-a: 1\r\n'));
    });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const c = await rawClient(gw.port);
    t.after(() => c.socket.destroy());
    assert.match(c.head, /\r\n__proto__: polluted\r\n/);
    assert.match(c.head, /\r\nx-a: 1\r\n/);
  });

  test('a client __proto__ header and Sec-WebSocket-* fields go upstream unchanged', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const c = await rawClient(gw.port, '/', '__proto__: x\r\nSec-WebSocket-Protocol: chat\r\n');
    t.after(() => c.socket.destroy());
    await waitUntil(() => up.headers.length === 1, 2000, 'upstream');
    assert.equal(up.headers[0]!['sec-websocket-protocol'], 'chat');
    assert.equal(up.headers[0]!['sec-websocket-version'], '13');
  });
});
