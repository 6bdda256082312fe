import assert from 'node:assert/strict';
import { test } from 'node:test';
import { echoHandler, httpUpstream, send, sleep, startTestGateway, waitUntil } from '../support.ts';
import { mirrored, recordingShadow } from './helpers.ts';

test('mirrors in flight on a loop that crashed do not stay counted: the route is mirrored again', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await recordingShadow(() => undefined); // never answers (the shadow's timeouts: 30 s)
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const config = mirrored(main.address, shadow.address, { maxInFlight: 2 });
  // Two loops on worker threads (one loop runs on the test's thread, where a crash is the test's).
  config.listeners = [{ address: '127.0.0.1:0', loops: 2 }];
  const gw = await startTestGateway(config, {
    handlerModule: new URL('../crashable-handler.ts', import.meta.url),
  });
  t.after(() => gw.stop(500));
  assert.equal((await send(gw.port, '/a')).status, 200);
  assert.equal((await send(gw.port, '/b')).status, 200);
  await waitUntil(() => shadow.seen.length === 2, 3000, 'two mirrors at the shadow');
  assert.equal(gw.gateway.mirrorStats().app!.inFlight, 2);
  // Crash both loops (each connection lands on one of them); their mirrors die with them.
  const restarted = new Set<number>();
  gw.gateway.listeners[0]!.on('loopRestart', (loop: number) => restarted.add(loop));
  for (let i = 0; i < 40 && restarted.size < 2; i++) {
    await send(gw.port, '/crash').catch(() => undefined);
    await sleep(50);
  }
  assert.equal(restarted.size, 2, 'both loops crashed and came back');
  await waitUntil(
    async () => (await send(gw.port, '/c').catch(() => ({ status: 0 }))).status === 200,
    5000,
    'the restarted loops serve',
  );
  await sleep(200);
  assert.ok(
    shadow.seen.some((s) => s.url === '/c'),
    `no mirror after the restart: ${JSON.stringify(gw.gateway.mirrorStats().app)} (inFlight counts the dead loops' mirrors)`,
  );
});
