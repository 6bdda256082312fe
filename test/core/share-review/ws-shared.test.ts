// Review of the pub/sub path on Conn.writeShared: published frames mixed with a subscriber's own sends,
// compressed and plain subscribers, a slow subscriber (its socket paused) under maxBackpressure.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serve } from 'netloom';
import { server } from 'netloom/http1';
import { type WebSocket, webSocket } from 'netloom/websocket';
import WebSocketClient from 'ws';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

test('published frames interleave with direct sends in call order, compressed and plain, slow and fast subscribers', async (t) => {
  const sockets: WebSocket[] = [];
  let overLimit = '';
  const LIMIT = 64 * 1024;
  const room = webSocket({
    compression: { threshold: 64 },
    maxBackpressure: LIMIT,
    open: (ws) => {
      ws.subscribe('room');
      sockets.push(ws);
    },
    message: (_ws, message) => {
      if (message !== 'go') return;
      // Many turns (the loop flushes between them): a fast subscriber keeps up, a paused one falls behind.
      let i = 0;
      const batch = () => {
        for (const end = i + 10; i < end && i < 3000; i++) {
          const big = i % 3 === 0; // past the threshold: the compressed frame for deflate subscribers
          room.publish('room', big ? `pub ${i} ${'x'.repeat(12000)}` : `pub ${i}`);
          for (const s of sockets) {
            if (s.bufferedAmount > LIMIT + 12100) overLimit = `${s.bufferedAmount}`;
            if (i % 7 === 0) s.send(`direct ${i}`);
          }
        }
        if (i < 3000) setTimeout(batch, 1);
        else room.publish('room', 'end');
      };
      batch();
    },
  });
  const engine = await serve(
    () =>
      server((req, res) => {
        room.upgrade(req, res);
      }),
    { loops: 1 },
  );
  t.after(() => engine.stop({ deadline: 1000 }));
  const clients: { c: WebSocketClient; got: string[]; slow: boolean }[] = [];
  t.after(() => {
    for (const x of clients) x.c.terminate();
  });
  for (let i = 0; i < 6; i++) {
    const c = new WebSocketClient(`ws://127.0.0.1:${engine.port}/`, { perMessageDeflate: i % 2 === 0 });
    await new Promise((r, j) => {
      c.once('open', r);
      c.once('error', j);
    });
    const x = { c, got: [] as string[], slow: i >= 4 };
    c.on('message', (d: Buffer) => x.got.push(d.toString()));
    clients.push(x);
  }
  await waitFor(() => sockets.length === 6, 3000, 'server sockets');
  for (const x of clients) if (x.slow) (x.c as unknown as { _socket: { pause(): void } })._socket.pause();
  clients[0]!.c.send('go');
  await sleep(1500);
  for (const x of clients) if (x.slow) (x.c as unknown as { _socket: { resume(): void } })._socket.resume();
  await waitFor(() => clients.every((x) => x.got.at(-1) === 'end'), 15000, 'the end marker everywhere');
  // Every client: its messages in the order the server produced them (a slow one may miss dropped ones).
  const order: string[] = [];
  for (let i = 0; i < 3000; i++) {
    order.push(i % 3 === 0 ? `pub ${i} ${'x'.repeat(12000)}` : `pub ${i}`);
    if (i % 7 === 0) order.push(`direct ${i}`);
  }
  order.push('end');
  for (const [k, x] of clients.entries()) {
    // The sender (client 0) is a subscriber too: server publishes include it.
    const kind = `client ${k} (${k % 2 === 0 ? 'deflate' : 'plain'}${x.slow ? ', slow' : ''})`;
    if (!x.slow) {
      const bad = x.got.findIndex((m, n) => m !== order[n]);
      assert.equal(
        bad,
        -1,
        `${kind}: message ${bad} is ${x.got[bad]?.slice(0, 20)}, want ${order[bad]?.slice(0, 20)}`,
      );
      assert.equal(x.got.length, order.length, `${kind}: all delivered`);
    } else {
      let j = 0;
      for (const m of x.got) {
        while (j < order.length && order[j] !== m) j++;
        assert.ok(j < order.length, `${kind}: ${m.slice(0, 20)} out of order or corrupt`);
        j++;
      }
    }
  }
  const slowGot = clients.filter((x) => x.slow).map((x) => x.got.length);
  assert.ok(
    slowGot.some((n) => n < order.length),
    `the slow subscribers dropped some (${slowGot} of ${order.length}): backpressure exercised`,
  );
  assert.equal(overLimit, '', 'bufferedAmount never past maxBackpressure by more than a frame');
});
