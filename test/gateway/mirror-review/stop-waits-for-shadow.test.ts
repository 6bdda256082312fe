import assert from 'node:assert/strict';
import { test } from 'node:test';
import { echoHandler, httpUpstream, send, startTestGateway } from '../support.ts';
import { mirrored, recordingShadow } from './helpers.ts';

test('a graceful stop does not wait for a shadow that never answers', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await recordingShadow(() => undefined); // takes the request in, never answers
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(mirrored(main.address, shadow.address));
  assert.equal((await send(gw.port, '/x')).status, 200);
  // Nothing live is in flight: only the mirror (fire-and-forget) waits for the shadow (firstByte 30 s).
  const started = performance.now();
  await gw.stop(4000);
  const took = performance.now() - started;
  assert.ok(took < 1500, `stop took ${Math.round(took)} ms, held by the mirror's shadow connection`);
});
