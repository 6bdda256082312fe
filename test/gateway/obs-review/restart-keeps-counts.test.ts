// Review of the gateway metrics across a loop restart (a guard): the restarted loop's writer continues its
// row's totals, so requests counted before the crash stay counted, the ones after add to them, and the
// restart itself is counted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseExposition } from '../../fixtures/prometheus.ts';
import {
  crashLoop,
  gatewayConfig,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';
const KEY = 'netloom_gateway_requests_total{route="a",domain="default",upstream="app",status="2xx"}';

test('request counts survive a loop restart, and the restart is counted', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ app: upstreamOf([up.address]) }, [{ name: 'a', match: { path: '/' }, upstream: 'app' }], {
      listeners: [{ address: '127.0.0.1:0', loops: 2 }],
      admin: { address: '127.0.0.1:0', token: TOKEN },
    }),
    { handlerModule: new URL('../fixtures/targeted-crash-handler.ts', import.meta.url) },
  );
  t.after(() => gw.stop(200));
  const scrape = async () =>
    parseExposition(
      (await send(gw.gateway.admin!.port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } }))
        .text,
    );
  for (let i = 0; i < 30; i++) assert.equal((await send(gw.port, '/a')).status, 200);
  await sleep(100);
  assert.equal((await scrape()).get(KEY), 30);
  const engine = gw.gateway.listeners[0]!;
  let restarted = false;
  engine.on('loopRestart', () => {
    restarted = true;
  });
  await crashLoop(gw.port, 0); // once: see crashLoop
  await waitUntil(() => restarted, 5000, 'loop 0 coming back');
  await waitUntil(
    async () => (await send(gw.port, '/ready').catch(() => ({ status: 0 }))).status === 200,
    5000,
  );
  await sleep(200);
  const mid = (await scrape()).get(KEY)!;
  for (let i = 0; i < 30; i++) assert.equal((await send(gw.port, '/b')).status, 200);
  await sleep(100);
  const m = await scrape();
  assert.equal(m.get(KEY), mid + 30);
  assert.ok(mid >= 31, `counts before the crash kept: ${mid}`);
  assert.equal(m.get(`netloom_loop_restarts_total{listener="${engine.address}",loop="0"}`), 1);
});
