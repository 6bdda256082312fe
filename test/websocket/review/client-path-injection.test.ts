import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import type { EventLoop } from 'netloom';
import { serve } from 'netloom';
import { server } from 'netloom/http1';
import { connectWebSocket } from 'netloom/websocket';

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
const accept = (k: string) =>
  createHash('sha1').update(`${k}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
async function raw(onReq: (s: net.Socket, req: string) => void) {
  const srv = net.createServer((s) => {
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n\r\n')) {
        const r = buf;
        buf = '';
        onReq(s, r);
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { srv, addr: `127.0.0.1:${(srv.address() as net.AddressInfo).port}` };
}
const M = { message() {} };
const keyOf = (req: string) => /sec-websocket-key: (\S+)/i.exec(req)![1]!;
const ok = (req: string) =>
  `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept(keyOf(req))}\r\n\r\n`;

test('path CRLF injection', async (t) => {
  let got = '';
  const { srv, addr } = await raw((s, r) => {
    got = r;
    s.write(ok(r));
  });
  const { loop, engine } = await loopWith();
  t.after(async () => {
    await engine.stop();
    srv.close();
  });
  let threw = false;
  try {
    const ws = await connectWebSocket(loop, addr, M, { path: '/x HTTP/1.1\r\nX-Evil: 1\r\nX-Pad: /' });
    ws.terminate();
  } catch {
    threw = true;
  }
  assert.ok(threw || !/\r\nX-Evil: 1\r\n/.test(got), `injected: ${JSON.stringify(got)}`);
});
