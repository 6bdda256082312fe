// A loop that crashes with requests in flight under a `concurrency` limit: the places those requests held
// in the shared key table come back when the loop is restarted (and when it is not), instead of staying
// taken for good and refusing the client (429) from then on.
import assert from 'node:assert/strict';
import http from 'node:http';
import { type TestContext, test } from 'node:test';
import { createKeyTable, SharedKeyTable } from 'netloom/gateway';
import {
  crashLoop,
  gatewayConfig,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

const MAX = 8;

async function scenario(t: TestContext, restart: boolean): Promise<void> {
  const gates: (() => void)[] = [];
  const up = await httpUpstream((_req, res) => {
    gates.push(() => res.end('done'));
  });
  t.after(() => {
    for (const g of gates.splice(0)) g();
    return up.close();
  });
  const gw = await startTestGateway(
    gatewayConfig(
      { up: upstreamOf([up.address]) },
      [
        {
          name: 'api',
          match: { path: '/slow' },
          upstream: 'up',
          filters: [{ name: 'rate-limit', concurrency: { max: MAX } }],
        },
      ],
      { listeners: [{ address: '127.0.0.1:0', loops: 2 }] },
    ),
    {
      handlerModule: new URL('./fixtures/targeted-crash-handler.ts', import.meta.url),
      engine: restart ? {} : { maxRestarts: 0 },
    },
  );
  t.after(() => gw.stop(200));
  const engine = gw.gateway.listeners[0]!;
  let back = false;
  engine.on(restart ? 'loopRestart' : 'loopFailed', () => {
    back = true;
  });
  // MAX requests in flight from one client address, over fresh connections (both loops take some).
  const first = Array.from({ length: MAX }, () =>
    send(gw.port, '/slow').then(
      (r) => r.status,
      () => 0,
    ),
  );
  await waitUntil(() => gates.length === MAX, 3000, 'every request at the upstream');
  await crashLoop(gw.port, 0); // once: see crashLoop
  await waitUntil(() => back, 5000, restart ? 'loop 0 coming back' : 'loop 0 given up');
  for (const g of gates.splice(0)) g();
  const statuses = await Promise.all(first);
  const lost = statuses.filter((s) => s === 0).length;
  assert.ok(lost >= 1, `some of the first requests ran on loop 0 (${statuses.join(',')})`);
  await sleep(200);
  // The client's whole concurrency again: MAX at the upstream at once, none refused.
  const agent = new http.Agent({ keepAlive: false });
  t.after(() => agent.destroy());
  const second = Array.from({ length: MAX }, () => send(gw.port, '/slow', { agent }).then((r) => r.status));
  // Refused ones are answered at once; admitted ones wait at the upstream.
  await waitUntil(() => gates.length === MAX, 1500, 'the second round at the upstream').catch(
    () => undefined,
  );
  const reached = gates.length;
  for (const g of gates.splice(0)) g();
  const again = await Promise.all(second);
  assert.deepEqual(
    again.filter((s) => s !== 200),
    [],
    `${lost} requests died with loop 0; after it ${restart ? 'restarted' : 'failed'} ${reached} of ${MAX} reached the upstream (${again.join(',')})`,
  );
}

test('places in flight on a crashed loop come back when it restarts: the whole concurrency again', (t) =>
  scenario(t, true));

test('places in flight on a loop that is not restarted come back too (the main thread gives them)', (t) =>
  scenario(t, false));

test('the journal against a model: 200,000 random takes and gives over 1,500 keys, then a crash', () => {
  const buffer = createKeyTable();
  const loop = new SharedKeyTable(buffer, 3);
  const main = new SharedKeyTable(buffer);
  // Keys crowd few journal starts (a % 1024 in 0..63), so runs are long and deletions shift entries back.
  const keys = Array.from({ length: 1500 }, (_, i) => ({
    a: (i % 64) + 1024 * Math.floor(i / 64),
    b: i * 7919,
  }));
  const model = new Map<number, { journaled: number; plain: number }>();
  let seed = 12345;
  const random = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  let unjournaled = 0;
  for (let step = 0; step < 200_000; step++) {
    const i = Math.floor(random() * keys.length);
    const m = model.get(i) ?? { journaled: 0, plain: 0 };
    const held = m.journaled + m.plain;
    if (held > 0 && random() < 0.5) {
      // Give back one place, as the filter does (with what its acquire said).
      const journaled = m.journaled > 0 && (m.plain === 0 || random() < 0.5);
      loop.release(keys[i]!, journaled);
      if (journaled) m.journaled--;
      else m.plain--;
    } else if (held < 50) {
      const o = loop.acquire(keys[i]!, 1000);
      assert.equal(o.allowed, true);
      assert.equal(o.untracked, false);
      if (o.journaled) m.journaled++;
      else {
        m.plain++;
        unjournaled++;
      }
    }
    model.set(i, m);
  }
  assert.ok(unjournaled > 0, 'the journal was full at times (1,024 keys in flight)');
  const distinct = [...model.values()].filter((m) => m.journaled > 0).length;
  assert.ok(distinct <= 1024, `${distinct} keys journaled`);
  const expected = [...model.values()].reduce((n, m) => n + m.journaled, 0);
  // The loop dies: exactly its journaled places come back; the ones it could not journal stay.
  assert.equal(SharedKeyTable.reclaimInFlight(buffer, 3), expected);
  for (const [i, m] of model) assert.equal(main.inFlight(keys[i]!), m.plain, `key ${i}`);
  assert.equal(SharedKeyTable.reclaimInFlight(buffer, 3), 0, 'the journal is empty after');
});
