// Pub/sub across the engine's loops: subscribers on both loops of a two-loop engine receive what any
// connection (or the server) publishes; the sender is left out of its own publish; closed connections
// leave their topics.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serve } from 'netloom';
import WebSocketClient from 'ws';

async function open(
  port: number,
  deflate = false,
): Promise<{ c: WebSocketClient; loop: number; got: string[] }> {
  const c = new WebSocketClient(`ws://127.0.0.1:${port}/`, { perMessageDeflate: deflate });
  await new Promise((r, j) => {
    c.once('open', r);
    c.once('error', j);
  });
  const got: string[] = [];
  const first = new Promise<string>((r) => c.once('message', (d: Buffer) => r(d.toString())));
  c.send('loop?');
  const loop = Number((await first).split(' ')[1]);
  c.on('message', (d: Buffer) => got.push(d.toString()));
  return { c, loop, got };
}

test('a publish reaches subscribers on every loop, the sender excepted; the server publishes to all', async (t) => {
  const engine = await serve(new URL('../fixtures/ws-pubsub-handler.ts', import.meta.url), { loops: 2 });
  t.after(() => engine.stop());
  const clients: Awaited<ReturnType<typeof open>>[] = [];
  t.after(() => {
    for (const x of clients) x.c.terminate();
  });
  // Connections spread over the loops by the kernel's reuseport hash: open until both loops have some.
  for (let i = 0; i < 40 && (clients.length < 4 || new Set(clients.map((x) => x.loop)).size < 2); i++)
    clients.push(await open(engine.port, i % 2 === 0));
  assert.equal(new Set(clients.map((x) => x.loop)).size, 2, 'clients on both loops');
  const sender = clients[0]!;
  sender.c.send('pub:hello room');
  await new Promise((r) => setTimeout(r, 300));
  for (const x of clients) {
    if (x === sender) assert.deepEqual(x.got, [], 'not to itself');
    else assert.deepEqual(x.got, ['hello room'], `client on loop ${x.loop}`);
  }
  const long = 'everyone '.repeat(400); // past the compression threshold: compressed frames too
  sender.c.send(`all:${long}`);
  await new Promise((r) => setTimeout(r, 300));
  for (const x of clients) assert.equal(x.got.at(-1), long, `client on loop ${x.loop}`);
  // A closed subscriber is gone from its topic: the others still get the next publish.
  const leaving = clients.pop()!;
  leaving.c.close();
  await new Promise((r) => setTimeout(r, 100));
  clients[1]!.c.send('pub:after a close');
  await new Promise((r) => setTimeout(r, 300));
  for (const x of clients) if (x !== clients[1]) assert.equal(x.got.at(-1), 'after a close');
});
