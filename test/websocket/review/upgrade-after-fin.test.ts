// A handler that upgrades after an await, and a client that sends its upgrade request, a message and FIN at
// once: the FIN reached the HTTP exchange (peerEnded) and is never told to the WebSocket, which stays open
// on a half-closed socket until its idle timeout (default 120 s) instead of ending with 1006.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { frame, KEY } from '../support.ts';
import { sleep, start } from './helpers.ts';

test('FIN before an async upgrade: the WebSocket ends (1006) instead of staying open', async (t) => {
  const seen: string[] = [];
  let closeCode: number | undefined;
  const s = await start(
    {
      idleTimeout: 60_000,
      message(ws, m) {
        seen.push(String(m));
        ws.send(m);
      },
      close(_ws, code) {
        closeCode = code;
      },
    },
    { async: true },
  );
  t.after(() => s.stop());
  const sock = net.connect(s.port, '127.0.0.1');
  t.after(() => sock.destroy());
  let data = Buffer.alloc(0);
  sock.on('data', (d) => (data = Buffer.concat([data, d])));
  sock.on('error', () => {});
  await new Promise((r) => sock.once('connect', r));
  sock.end(
    Buffer.concat([
      Buffer.from(
        `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
      frame(true, 1, 'hi'),
    ]),
  );
  await sleep(1000);
  assert.deepEqual(seen, ['hi']);
  assert.equal(closeCode, 1006, 'the WebSocket was told the peer ended');
});
