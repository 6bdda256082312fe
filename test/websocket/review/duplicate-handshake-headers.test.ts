// RFC 6455 §11.3.1/§11.3.5: Sec-WebSocket-Key and Sec-WebSocket-Version must not appear more than once; the
// upgrade takes the first and switches (ws, which sees the values joined, answers 400).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rawSession } from '../support.ts';
import { start } from './helpers.ts';

test('a second Sec-WebSocket-Key is refused (400), not ignored', async (t) => {
  const s = await start({ message() {} });
  t.after(() => s.stop());
  const r = await rawSession(s.port, 'Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n');
  t.after(() => r.socket.destroy());
  assert.match(r.head, /^HTTP\/1.1 400/, r.head.split('\r\n')[0]);
});

test('a second Sec-WebSocket-Version (8) is refused, not ignored', async (t) => {
  const s = await start({ message() {} });
  t.after(() => s.stop());
  const r = await rawSession(s.port, 'Sec-WebSocket-Version: 8\r\n');
  t.after(() => r.socket.destroy());
  assert.doesNotMatch(r.head, /^HTTP\/1.1 101/, r.head.split('\r\n')[0]);
});
