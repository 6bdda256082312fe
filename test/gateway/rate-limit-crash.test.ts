// A loop that crashes with requests in flight under a `concurrency` limit: the places those requests held
// in the shared key table come back when the loop is restarted (and when it is not), instead of staying
// taken for good and refusing the client (429) from then on.
import assert from 'node:assert/strict';
import http from 'node:http';
import { type TestContext, test } from 'node:test';
import {
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
  let crashed = false;
  for (let i = 0; i < 50 && !crashed; i++)
    crashed = await send(gw.port, '/crash/0').then(
      () => false,
      () => true,
    );
  assert.ok(crashed, 'a /crash/0 landed on loop 0');
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
