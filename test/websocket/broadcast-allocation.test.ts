// A performance promise as a test (fasthttp's allocation_test.go in spirit): a publish to many subscribers
// builds its frame once and queues it by reference on every connection, so the loop's arena makes no staging
// slab per subscriber (before, each subscriber past the arena's free list cost a fresh 16 KiB slab).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type EventLoop, serve } from 'netloom';
import { server } from 'netloom/http1';
import { webSocket } from 'netloom/websocket';
import WebSocketClient from 'ws';

test('a publish to 700 subscribers allocates no arena slab per subscriber, and every one gets it', async (t) => {
  let loop: EventLoop | null = null;
  const room = webSocket({
    open: (ws) => ws.subscribe('room'),
    message: (ws, message, binary) => ws.publish('room', message, binary),
  });
  const engine = await serve(
    (l: EventLoop) => {
      loop = l;
      return server((req, res) => {
        room.upgrade(req, res);
      });
    },
    { loops: 1 },
  );
  t.after(() => engine.stop());
  const clients: WebSocketClient[] = [];
  t.after(() => {
    for (const c of clients) c.terminate();
  });
  let received = 0;
  for (let i = 0; i < 701; i++) {
    const c = new WebSocketClient(`ws://127.0.0.1:${engine.port}/`);
    await new Promise((resolve, reject) => {
      c.once('open', resolve);
      c.once('error', reject);
    });
    c.on('message', () => received++);
    clients.push(c);
  }
  const publisher = clients[0]!;
  const publishAndWait = async (k: number) => {
    const want = received + 700;
    publisher.send(`message ${k}`);
    const until = Date.now() + 5000;
    while (received < want && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    assert.equal(received, want, `message ${k} reached every subscriber`);
  };
  for (let k = 0; k < 3; k++) await publishAndWait(k); // warm up
  const arena = (loop as unknown as EventLoop & { arena: { allocated: number } }).arena;
  const before = arena.allocated;
  for (let k = 3; k < 23; k++) await publishAndWait(k);
  const grown = arena.allocated - before;
  assert.ok(grown < 20, `${grown} slabs allocated for 20 publishes to 700 subscribers`);
});
