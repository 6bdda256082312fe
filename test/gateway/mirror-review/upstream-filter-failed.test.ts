import assert from 'node:assert/strict';
import { test } from 'node:test';
import { echoHandler, httpUpstream, send, sleep, startTestGateway, waitUntil } from '../support.ts';
import { mirrored, recordingShadow } from './helpers.ts';

test('a request the gateway refused to send upstream (onUpstreamRequest failed) is not mirrored', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await recordingShadow();
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(
    mirrored(main.address, shadow.address, {}, { filters: [{ name: 'refuse-upstream' }] }),
    { plugins: [new URL('./filters.ts', import.meta.url).href] },
  );
  t.after(() => gw.stop());
  const r = await send(gw.port, '/unsigned');
  assert.equal(r.status, 500, 'the live request is refused by its filter');
  assert.equal(main.requests, 0, 'nothing reached the upstream');
  await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'mirrors settle');
  await sleep(100);
  assert.deepEqual(
    shadow.seen.map((s) => s.url),
    [],
    'the shadow got a request the upstream never did (README: the shadow gets what the upstream gets)',
  );
});
