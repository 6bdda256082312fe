// Review of the span ring: every GatewayLoop makes its Tracer's RingLogger with claimProducer (ids 32..63,
// never given back), not with the loop's fixed id as the engine's loggers do. The ring holds 64 producers:
// past 32 loops in all (listeners x loops, plus every restart of a crashed loop over the process's life),
// `new RingLogger` throws in the GatewayLoop constructor and the loop cannot boot. Without tracing the same
// gateway runs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf } from '../support.ts';

test('tracing works on a gateway of 33 loops (33 listeners of one loop each)', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const listeners = Array.from({ length: 33 }, () => ({ address: '127.0.0.1:0', loops: 1 }));
  const config = gatewayConfig(
    { app: upstreamOf([up.address]) },
    [{ name: 'a', match: { path: '/' }, upstream: 'app' }],
    {
      listeners,
    },
  );
  // The same gateway without tracing starts and serves on every listener.
  const plain = await startTestGateway(config);
  assert.equal((await send(plain.gateway.port(32), '/x')).status, 200);
  await plain.stop();
  const traced = { ...config, observability: { tracing: { endpoint: 'http://127.0.0.1:9/v1/traces' } } };
  let error: unknown = null;
  let gw: Awaited<ReturnType<typeof startTestGateway>> | null = null;
  try {
    gw = await startTestGateway(traced);
  } catch (err) {
    error = err;
  }
  t.after(() => gw?.stop());
  assert.equal(error, null, `the traced gateway did not start: ${String(error)}`);
  assert.equal((await send(gw!.gateway.port(32), '/x')).status, 200);
});
