// The client on loop.dial: against ws's server (which refuses unmasked frames, so ours are masked) and
// against our own; a handshake that is wrong in any part is refused with ERR_WS_HANDSHAKE.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import type { EventLoop } from 'netloom';
import { serve } from 'netloom';
import { server } from 'netloom/http1';
import { connectWebSocket, type WebSocket, webSocket } from 'netloom/websocket';
import { WebSocketServer } from 'ws';

/** An engine on one loop (the test's thread) whose loop the client dials from. */
async function loopWith(handler = server((_req, res) => res.end('x'))) {
  let loop!: EventLoop;
  const engine = await serve(
    (l: EventLoop) => {
      loop = l;
      return handler;
    },
    { loops: 1 },
  );
  return { loop, engine };
}

function collect() {
  const got: string[] = [];
  let wake: (() => void) | null = null;
  return {
    got,
    behavior: {
      message(_ws: WebSocket<undefined>, m: string | Buffer) {
        got.push(typeof m === 'string' ? m : `bin:${m.toString('hex')}`);
        wake?.();
      },
    },
    async until(n: number) {
      while (got.length < n) await new Promise<void>((r) => (wake = r));
    },
  };
}

test('against ws: masked frames accepted, text and binary echoed, the subprotocol agreed, a clean close', async (t) => {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    handleProtocols: (p) => (p.has('v2') ? 'v2' : false),
  });
  await new Promise((r) => wss.once('listening', r));
  wss.on('connection', (s) => s.on('message', (d, binary) => s.send(d, { binary })));
  const { loop, engine } = await loopWith();
  t.after(async () => {
    await engine.stop();
    await new Promise((r) => wss.close(r));
  });
  const c = collect();
  let closed: [number, string] | null = null;
  const ws = await connectWebSocket(
    loop,
    `127.0.0.1:${(wss.address() as net.AddressInfo).port}`,
    { ...c.behavior, close: (_w, code, reason) => (closed = [code, reason]) },
    { protocols: ['v1', 'v2'] },
  );
  assert.equal(ws.protocol, 'v2');
  ws.send('hello from netloom');
  ws.send(Buffer.from([1, 2, 3]));
  ws.send('x'.repeat(70_000));
  await c.until(3);
  assert.deepEqual(c.got.slice(0, 2), ['hello from netloom', 'bin:010203']);
  assert.equal(c.got[2], 'x'.repeat(70_000));
  ws.close(1000, 'done');
  for (let i = 0; i < 100 && closed === null; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(closed, [1000, 'done']);
});

test('against our own server', async (t) => {
  const echo = webSocket({
    message(s, m, binary) {
      s.send(m, binary);
    },
  });
  const { loop, engine } = await loopWith(
    server((req, res) => {
      echo.upgrade(req, res);
    }),
  );
  t.after(() => engine.stop());
  const c = collect();
  const ws = await connectWebSocket(loop, `127.0.0.1:${engine.port}`, c.behavior, { path: '/chat?room=1' });
  ws.send('round trip');
  await c.until(1);
  assert.deepEqual(c.got, ['round trip']);
  ws.close();
});

async function refusedBy(answer: (key: string) => string): Promise<string> {
  const srv = net.createServer((s) => {
    let head = '';
    s.on('data', (d: Buffer) => {
      head += d.toString();
      const m = /sec-websocket-key: (\S+)/i.exec(head);
      if (head.includes('\r\n\r\n') && m !== null) s.write(answer(m[1]!));
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { loop, engine } = await loopWith();
  try {
    await connectWebSocket(loop, `127.0.0.1:${(srv.address() as net.AddressInfo).port}`, collect().behavior, {
      timeout: 2000,
      protocols: ['v1'],
    });
    return 'accepted';
  } catch (err) {
    return `${(err as { code?: string }).code}: ${(err as Error).message}`;
  } finally {
    await engine.stop();
    await new Promise<void>((r) => srv.close(() => r()));
  }
}

test('handshakes that are wrong are refused: status, accept, extension, subprotocol', async () => {
  const ok = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n';
  assert.match(
    await refusedBy(() => 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n'),
    /ERR_WS_HANDSHAKE: the server answered/,
  );
  assert.match(
    await refusedBy(() => `${ok}Sec-WebSocket-Accept: wrong=\r\n\r\n`),
    /ERR_WS_HANDSHAKE: a wrong Sec-WebSocket-Accept/,
  );
  const { createHash } = await import('node:crypto');
  const accept = (k: string) =>
    createHash('sha1').update(`${k}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  assert.match(
    await refusedBy(
      (k) =>
        `${ok}Sec-WebSocket-Accept: ${accept(k)}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n`,
    ),
    /an extension we did not offer/,
  );
  assert.match(
    await refusedBy((k) => `${ok}Sec-WebSocket-Accept: ${accept(k)}\r\nSec-WebSocket-Protocol: v9\r\n\r\n`),
    /a subprotocol we did not offer/,
  );
  assert.equal(
    await refusedBy((k) => `${ok}Sec-WebSocket-Accept: ${accept(k)}\r\nSec-WebSocket-Protocol: v1\r\n\r\n`),
    'accepted',
  );
});
