// engine.stop() with WebSockets open: the sweep closes them as idle TCP connections (FIN, no close frame),
// so clients see 1006; a server going down is 1001 Going Away (RFC 6455 §7.4.1).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import WebSocketClient from 'ws';
import { start } from './helpers.ts';

test('engine.stop() closes open WebSockets with 1001', async () => {
  const s = await start({ message() {} });
  const c = new WebSocketClient(`ws://127.0.0.1:${s.port}/`);
  await new Promise((r) => c.once('open', r));
  const closed = new Promise<number>((r) => c.once('close', (code: number) => r(code)));
  await Promise.race([s.stop(), new Promise((r) => setTimeout(r, 4000))]);
  const code = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 2000))]);
  c.terminate();
  assert.equal(code, 1001);
});
