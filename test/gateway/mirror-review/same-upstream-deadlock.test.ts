import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { echoHandler, gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf } from '../support.ts';

test('a mirror to the route’s own upstream does not take the connection the live request needs', async (t) => {
  // The configuration accepts mirror.upstream equal to the route's upstream (mirror.test.ts validates it).
  const main = await httpUpstream(echoHandler('main'));
  t.after(() => main.close());
  const gw = await startTestGateway(
    gatewayConfig({ main: upstreamOf([main.address], { pool: { maxConnections: 1, queueTimeout: 1500 } }) }, [
      { name: 'app', match: { path: '/' }, upstream: 'main', mirror: { upstream: 'main' } },
    ]),
  );
  t.after(() => gw.stop());
  const started = performance.now();
  const r = await send(gw.port, '/upload', { method: 'POST', body: randomBytes(1000) });
  const took = performance.now() - started;
  // The mirror takes the only connection first and waits for the body, which flows only once the live
  // request has a connection: the live request waits out the queue timeout and fails.
  assert.equal(r.status, 200, `live POST answered ${r.status} after ${Math.round(took)} ms: ${r.text}`);
});
