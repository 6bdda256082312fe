// Frames sent in the same write as the upgrade request (sync and async handlers) must be read.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { frame, KEY } from '../support.ts';
import { sleep, start } from './helpers.ts';

for (const async of [false, true]) {
  test(`a frame right behind the upgrade request is echoed (${async ? 'async' : 'sync'} handler)`, async (t) => {
    const s = await start({ message: (ws, m, b) => ws.send(m, b) }, { async });
    t.after(() => s.stop());
    const sock = net.connect(s.port, '127.0.0.1');
    t.after(() => sock.destroy());
    let data = Buffer.alloc(0);
    sock.on('data', (d) => (data = Buffer.concat([data, d])));
    sock.on('error', () => {});
    await new Promise((r) => sock.once('connect', r));
    sock.write(
      Buffer.concat([
        Buffer.from(
          `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        ),
        frame(true, 1, 'early'),
      ]),
    );
    await sleep(300);
    const s2 = data.toString('latin1');
    assert.match(s2, /^HTTP\/1.1 101/);
    assert.ok(s2.endsWith('\x81\x05early'), JSON.stringify(s2.slice(-20)));
  });
}
