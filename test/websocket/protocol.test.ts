// The WebSocket codec over real sockets: ws as a client, and raw frames for every rule of RFC 6455 §5-7
// that protects the server, each checking the exact close code; the handshake's refusals; Autobahn's
// UTF-8 sequences through the incremental validator, whole and byte by byte.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { serve } from 'netloom';
import { server } from 'netloom/http1';
import { Utf8Validator, webSocket } from 'netloom/websocket';
import WebSocketClient from 'ws';
import { frame, KEY, rawSession } from './support.ts';

let port = 0;
let stop: () => Promise<void>;
const closes: [number, string][] = [];

before(async () => {
  const ws = webSocket<{ path: string }>({
    maxPayload: 64 * 1024,
    protocols: ['chat.v2', 'chat.v1'],
    checkOrigin: (origin) => origin !== 'https://evil.example',
    message(socket, message, binary) {
      if (message === 'close-me') {
        socket.close(4000, 'asked to');
        return;
      }
      socket.send(message, binary);
    },
    close(_socket, code, reason) {
      closes.push([code, reason]);
    },
  });
  const engine = await serve(
    server((req, res) => {
      if (req.path.startsWith('/ws')) ws.upgrade(req, res, { path: req.path });
      else res.end('plain');
    }),
    { loops: 1 },
  );
  port = engine.port;
  stop = () => engine.stop();
});
after(() => stop());

function client(protocols?: string[]): Promise<WebSocketClient> {
  return new Promise((resolve, reject) => {
    const c = new WebSocketClient(`ws://127.0.0.1:${port}/ws`, protocols, { perMessageDeflate: false });
    c.once('open', () => resolve(c));
    c.once('error', reject);
  });
}

function next(c: WebSocketClient): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve) =>
    c.once('message', (data: Buffer, binary: boolean) => resolve({ data, binary })),
  );
}

describe('with ws as the client', () => {
  test('text and binary echo, a 60 KB message, the subprotocol chosen from the client offer', async () => {
    const c = await client(['chat.v1', 'chat.v2']);
    assert.equal(c.protocol, 'chat.v2');
    c.send('héllo');
    let m = await next(c);
    assert.equal(m.binary, false);
    assert.equal(m.data.toString(), 'héllo');
    const big = Buffer.alloc(60_000, 7);
    c.send(big);
    m = await next(c);
    assert.equal(m.binary, true);
    assert.ok(m.data.equals(big));
    c.close(1000, 'bye');
    const [code] = await new Promise<[number, Buffer]>((r) =>
      c.once('close', (k: number, why: Buffer) => r([k, why])),
    );
    assert.equal(code, 1000);
  });

  test('a server close: code and reason reach the client', async () => {
    const c = await client();
    c.send('close-me');
    const [code, reason] = await new Promise<[number, string]>((r) =>
      c.once('close', (k: number, why: Buffer) => r([k, why.toString()])),
    );
    assert.equal(code, 4000);
    assert.equal(reason, 'asked to');
  });

  test('ping gets pong with the same payload', async () => {
    const c = await client();
    c.ping('are you there');
    const data = await new Promise<Buffer>((r) => c.once('pong', r));
    assert.equal(data.toString(), 'are you there');
    c.close();
  });
});

// ---- raw frames -----------------------------------------------------------------------------------------

/** Sends `bytes` and expects a close frame with `code`, then the connection's end. */
async function expectClose(bytes: Buffer[], code: number) {
  const s = await rawSession(port);
  assert.match(s.head, /^HTTP\/1\.1 101 /);
  s.send(...bytes);
  await Promise.race([s.closed, new Promise((r) => setTimeout(r, 3000))]);
  const close = s.frames().find((f) => f.opcode === 8);
  assert.ok(close !== undefined, `a close frame (got ${s.frames().map((f) => f.opcode)})`);
  assert.equal(close.payload.readUInt16BE(0), code, close.payload.subarray(2).toString());
  s.socket.destroy();
}

describe('frame rules (RFC 6455 §5): the exact close code', () => {
  test('the handshake answer: 101 with the accept of RFC 6455 §1.3', async () => {
    const s = await rawSession(port);
    assert.match(s.head, /^HTTP\/1\.1 101 Switching Protocols/);
    assert.match(s.head, /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
    s.socket.destroy();
  });
  test('an unmasked frame from a client: 1002', () =>
    expectClose([frame(true, 1, 'x', { mask: false })], 1002));
  test('RSV1 without an extension: 1002', () => expectClose([frame(true, 1, 'x', { rsv: 0x40 })], 1002));
  test('a reserved opcode: 1002', () => expectClose([frame(true, 3, 'x')], 1002));
  test('a reserved control opcode: 1002', () => expectClose([frame(true, 0xb, 'x')], 1002));
  test('a control frame of 126 octets: 1002', () => expectClose([frame(true, 9, Buffer.alloc(126))], 1002));
  test('a fragmented ping: 1002', () => expectClose([frame(false, 9, 'x')], 1002));
  test('a continuation with nothing to continue: 1002', () => expectClose([frame(true, 0, 'x')], 1002));
  test('a new message inside a fragmented one: 1002', () =>
    expectClose([frame(false, 1, 'a'), frame(true, 1, 'b')], 1002));
  test('a message over maxPayload: 1009 from its length, before its payload is sent', async () => {
    const s = await rawSession(port);
    // The header alone declares 100,000 octets; no payload follows.
    s.send(Buffer.from([0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0x86, 0xa0, 1, 2, 3, 4]));
    await Promise.race([s.closed, new Promise((r) => setTimeout(r, 3000))]);
    assert.equal(
      s
        .frames()
        .find((f) => f.opcode === 8)
        ?.payload.readUInt16BE(0),
      1009,
    );
  });
  test('fragments adding up past maxPayload: 1009', () =>
    expectClose([frame(false, 2, Buffer.alloc(40_000)), frame(true, 0, Buffer.alloc(40_000))], 1009));
  test('invalid UTF-8 fails at once, in the middle of a fragmented message: 1007', async () => {
    const s = await rawSession(port);
    s.send(frame(false, 1, Buffer.from([0x61, 0xc0, 0xaf]))); // an overlong '/', first fragment only
    await Promise.race([s.closed, new Promise((r) => setTimeout(r, 3000))]);
    assert.equal(
      s
        .frames()
        .find((f) => f.opcode === 8)
        ?.payload.readUInt16BE(0),
      1007,
    );
  });
  test('a text message ending inside a character: 1007', () =>
    expectClose([frame(true, 1, Buffer.from([0xe2, 0x82]))], 1007));
  test('a close frame of one octet: 1002', () => expectClose([frame(true, 8, Buffer.from([3]))], 1002));
  test('a close code that may not be sent (1005): 1002', () =>
    expectClose([frame(true, 8, Buffer.from([0x03, 0xed]))], 1002));
  test('a close reason that is not UTF-8: 1007', () =>
    expectClose([frame(true, 8, Buffer.from([0x03, 0xe8, 0xff]))], 1007));
  test('a close frame is answered with its code and the connection ends', () =>
    expectClose([frame(true, 8, Buffer.from([0x0f, 0xa0, 0x6f, 0x6b]))], 4000));
  test('control frames between fragments; the message assembled whole', async () => {
    const s = await rawSession(port);
    s.send(frame(false, 1, 'hel'), frame(true, 9, 'p'), frame(false, 0, 'lo '), frame(true, 0, 'wörld'));
    await new Promise((r) => setTimeout(r, 200));
    const frames = s.frames();
    assert.deepEqual(
      frames.map((f) => [f.opcode, f.payload.toString()]),
      [
        [0xa, 'p'],
        [1, 'hello wörld'],
      ],
    );
    s.socket.destroy();
  });
  test('a frame split byte by byte is read the same', async () => {
    const s = await rawSession(port);
    const bytes = frame(true, 2, Buffer.from('split into single bytes'));
    for (const b of bytes) {
      s.send(Buffer.from([b]));
      await new Promise((r) => setTimeout(r, 1));
    }
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(s.frames()[0]?.payload.toString(), 'split into single bytes');
    s.socket.destroy();
  });
});

describe('the handshake refused (RFC 6455 §4.2)', () => {
  async function answer(request: string): Promise<string> {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.write(request);
    await new Promise((r) => setTimeout(r, 150));
    socket.destroy();
    return text;
  }
  const base = `Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\n`;
  test('version 8: 426 naming 13', async () => {
    const t = await answer(`GET /ws HTTP/1.1\r\n${base}Sec-WebSocket-Version: 8\r\n\r\n`);
    assert.match(t, /^HTTP\/1\.1 426 /);
    assert.match(t, /sec-websocket-version: 13/i);
  });
  test('a bad key: 400', async () => {
    const t = await answer(
      `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    assert.match(t, /^HTTP\/1\.1 400 /);
  });
  test('POST: 405', async () => {
    const t = await answer(
      `POST /ws HTTP/1.1\r\n${base}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n`,
    );
    assert.match(t, /^HTTP\/1\.1 405 /);
  });
  test('HTTP/1.0: 400', async () => {
    const t = await answer(`GET /ws HTTP/1.0\r\n${base}Sec-WebSocket-Version: 13\r\n\r\n`);
    assert.match(t, /^HTTP\/1\.1 400 /);
  });
  test('an origin the hook refuses: 403', async () => {
    const t = await answer(
      `GET /ws HTTP/1.1\r\n${base}Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n`,
    );
    assert.match(t, /^HTTP\/1\.1 403 /);
  });
  test('no Upgrade: 426', async () => {
    const t = await answer('GET /ws HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Version: 13\r\n\r\n');
    assert.match(t, /^HTTP\/1\.1 426 /);
  });
});

describe('UTF-8 validation (Autobahn case 6 sequences)', () => {
  const cases = JSON.parse(
    readFileSync(new URL('../fixtures/autobahn/utf8-sequences.json', import.meta.url), 'utf8'),
  ) as { category: string; valid: boolean; hex: string }[];
  test(`${cases.length} sequences, whole and byte by byte`, () => {
    for (const c of cases) {
      const bytes = Buffer.from(c.hex, 'hex');
      const whole = new Utf8Validator();
      assert.equal(whole.feed(bytes, 0, bytes.length) && whole.complete, c.valid, `${c.category}: ${c.hex}`);
      const split = new Utf8Validator();
      let ok = true;
      for (let i = 0; i < bytes.length && ok; i++) ok = split.feed(bytes, i, i + 1);
      assert.equal(ok && split.complete, c.valid, `byte by byte, ${c.category}: ${c.hex}`);
    }
  });
});
