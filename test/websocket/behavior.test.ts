// permessage-deflate (negotiation, compressed frames both ways, a deflate bomb, bad deflate data), the idle
// timeout with its automatic ping, the close timeout, and backpressure (send's answers, drain, the limit).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import zlib from 'node:zlib';
import { serve } from 'netloom';
import { server } from 'netloom/http1';
import { type SendStatus, type WebSocketBehavior, webSocket } from 'netloom/websocket';
import WebSocketClient from 'ws';
import { frame, rawSession, within } from './support.ts';

async function start(behavior: WebSocketBehavior<undefined>) {
  const ws = webSocket(behavior);
  const engine = await serve(
    server((req, res) => {
      ws.upgrade(req, res);
    }),
    { loops: 1 },
  );
  return { port: engine.port, stop: () => engine.stop() };
}

const echo: WebSocketBehavior<undefined>['message'] = (socket, message, binary) => {
  socket.send(message, binary);
};

function deflate(data: Buffer): Buffer {
  const out = zlib.deflateRawSync(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
}

test('permessage-deflate with ws: negotiated, compressed both ways, text and binary echoed', async (t) => {
  const s = await start({ compression: true, message: echo });
  t.after(() => s.stop());
  const c = new WebSocketClient(`ws://127.0.0.1:${s.port}/`, { perMessageDeflate: true });
  await new Promise((r, j) => {
    c.once('open', r);
    c.once('error', j);
  });
  t.after(() => c.terminate());
  assert.match(String(c.extensions), /permessage-deflate/);
  const text = 'a compressible message '.repeat(200);
  c.send(text);
  const got = await new Promise<Buffer>((r) => c.once('message', (d: Buffer) => r(d)));
  assert.equal(got.toString(), text);
  const bin = Buffer.alloc(50_000, 3);
  c.send(bin);
  const gotBin = await new Promise<Buffer>((r) => c.once('message', (d: Buffer) => r(d)));
  assert.ok(gotBin.equals(bin));
});

test('permessage-deflate on the wire: the agreement, RSV1 on a large answer, none below the threshold', async (t) => {
  const s = await start({ compression: { threshold: 100 }, message: echo });
  t.after(() => s.stop());
  const r = await rawSession(
    s.port,
    'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n',
  );
  t.after(() => r.socket.destroy());
  assert.match(
    r.head,
    /sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15/i,
  );
  const big = 'x'.repeat(5000);
  r.send(frame(true, 1, deflate(Buffer.from(big)), { rsv: 0x40 }), frame(true, 1, 'short'));
  await new Promise((res) => setTimeout(res, 150));
  const [a, b] = r.frames();
  assert.ok(a?.rsv1, 'the large answer is compressed');
  assert.equal(
    zlib
      .inflateRawSync(Buffer.concat([a!.payload, Buffer.from([0, 0, 0xff, 0xff])]), {
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      })
      .toString(),
    big,
  );
  assert.equal(b?.rsv1, false);
  assert.equal(b?.payload.toString(), 'short');
});

test('a deflate bomb: a small message inflating past maxPayload closes with 1009', async (t) => {
  const s = await start({ compression: true, maxPayload: 64 * 1024, message: echo });
  t.after(() => s.stop());
  const r = await rawSession(s.port, 'Sec-WebSocket-Extensions: permessage-deflate\r\n');
  t.after(() => r.socket.destroy());
  const bomb = deflate(Buffer.alloc(50 * 1024 * 1024)); // 50 MB of zeros in about 50 KB
  assert.ok(bomb.length < 64 * 1024);
  r.send(frame(true, 2, bomb, { rsv: 0x40 }));
  await within(r.closed, 3000);
  assert.equal(
    r
      .frames()
      .find((f) => f.opcode === 8)
      ?.payload.readUInt16BE(0),
    1009,
  );
});

test('compressed bytes that do not inflate: 1007; RSV1 on a continuation: 1002', async (t) => {
  const s = await start({ compression: true, message: echo });
  t.after(() => s.stop());
  const r = await rawSession(s.port, 'Sec-WebSocket-Extensions: permessage-deflate\r\n');
  r.send(frame(true, 2, Buffer.from([0xff, 0xff, 0xff, 0xff]), { rsv: 0x40 }));
  await within(r.closed, 3000);
  assert.equal(
    r
      .frames()
      .find((f) => f.opcode === 8)
      ?.payload.readUInt16BE(0),
    1007,
  );
  const r2 = await rawSession(s.port, 'Sec-WebSocket-Extensions: permessage-deflate\r\n');
  r2.send(frame(false, 2, deflate(Buffer.from('ab')), { rsv: 0x40 }), frame(true, 0, 'c', { rsv: 0x40 }));
  await within(r2.closed, 3000);
  assert.equal(
    r2
      .frames()
      .find((f) => f.opcode === 8)
      ?.payload.readUInt16BE(0),
    1002,
  );
});

test('no compression agreed: RSV1 is a protocol error (1002)', async (t) => {
  const s = await start({ message: echo });
  t.after(() => s.stop());
  const r = await rawSession(s.port, 'Sec-WebSocket-Extensions: permessage-deflate\r\n');
  assert.doesNotMatch(r.head, /sec-websocket-extensions/i);
  r.send(frame(true, 1, deflate(Buffer.from('hi')), { rsv: 0x40 }));
  await within(r.closed, 3000);
  assert.equal(
    r
      .frames()
      .find((f) => f.opcode === 8)
      ?.payload.readUInt16BE(0),
    1002,
  );
});

test('idle: a ping after idleTimeout, then close 1001 when nothing answers', async (t) => {
  const s = await start({ idleTimeout: 300, message: echo });
  t.after(() => s.stop());
  const r = await rawSession(s.port);
  const started = Date.now();
  await within(r.closed, 3000);
  const frames = r.frames();
  assert.equal(frames[0]?.opcode, 9, 'a ping first');
  assert.equal(frames.find((f) => f.opcode === 8)?.payload.readUInt16BE(0), 1001);
  assert.ok(Date.now() - started >= 500, 'after two idle periods');
});

test('idle: a client that answers the ping stays', async (t) => {
  const s = await start({ idleTimeout: 200, message: echo });
  t.after(() => s.stop());
  const c = new WebSocketClient(`ws://127.0.0.1:${s.port}/`); // ws answers pings by itself
  await new Promise((r) => c.once('open', r));
  t.after(() => c.terminate());
  await new Promise((r) => setTimeout(r, 900));
  assert.equal(c.readyState, WebSocketClient.OPEN);
});

test('the close handshake times out: the connection ends after closeTimeout', async (t) => {
  const s = await start({
    closeTimeout: 300,
    message(socket) {
      socket.close(1000, 'done');
    },
  });
  t.after(() => s.stop());
  const r = await rawSession(s.port);
  r.send(frame(true, 1, 'please close'));
  await new Promise((res) => setTimeout(res, 100));
  assert.equal(
    r
      .frames()
      .find((f) => f.opcode === 8)
      ?.payload.readUInt16BE(0),
    1000,
  );
  assert.equal(r.isClosed(), false, 'waits for our close frame');
  await within(r.closed, 2000);
  assert.ok(r.isClosed(), 'ended without our answer');
});

test('backpressure: sent, then buffered, then dropped past maxBackpressure; drain once the client reads', async (t) => {
  const statuses: SendStatus[] = [];
  let drained = 0;
  const s = await start({
    maxBackpressure: 4 * 1024 * 1024,
    message(socket) {
      const chunk = Buffer.alloc(256 * 1024, 1);
      for (let i = 0; i < 64; i++) {
        const st = socket.send(chunk);
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
  r.socket.pause();
  r.send(frame(true, 1, 'go'));
  await new Promise((res) => setTimeout(res, 300));
  assert.deepEqual(statuses, ['sent', 'buffered', 'dropped']);
  r.socket.resume();
  await new Promise((res) => setTimeout(res, 500));
  assert.equal(drained, 1);
});

test('closeOnBackpressureLimit: past the limit the connection closes with 1008', async (t) => {
  const s = await start({
    maxBackpressure: 1024 * 1024,
    closeOnBackpressureLimit: true,
    message(socket) {
      const chunk = Buffer.alloc(256 * 1024, 1);
      for (let i = 0; i < 64 && socket.open; i++) socket.send(chunk);
    },
  });
  t.after(() => s.stop());
  const r = await rawSession(s.port);
  r.send(frame(true, 1, 'go'));
  await within(r.closed, 3000);
  const close = r.frames().find((f) => f.opcode === 8);
  assert.equal(close?.payload.readUInt16BE(0), 1008);
});
