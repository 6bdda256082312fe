// Review of the gateway metrics: the latency histograms have buckets from 1 ms, but the times they observe
// come from the loop's coarse clock (loop.now(), refreshed on timer-wheel ticks, 25 ms by default). A
// request the upstream takes 6 ms to answer lands in the 1 ms bucket (0 ms) or in the 25 ms one, never
// where it belongs.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { parseExposition } from '../../fixtures/prometheus.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';

test('request and first-byte histograms see a 6 ms upstream as taking at least 5 ms', async (t) => {
  const up = await httpUpstream((_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    }, 6);
  });
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig(
      { app: upstreamOf([up.address]) },
      [{ name: 'api', match: { path: '/' }, upstream: 'app' }],
      {
        admin: { address: '127.0.0.1:0', token: TOKEN },
      },
    ),
  );
  t.after(() => gw.stop());
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const n = 40;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    assert.equal((await send(gw.port, `/x/${i}`, { agent })).status, 200);
    assert.ok(performance.now() - t0 >= 5, 'the upstream took its 6 ms');
  }
  await sleep(100);
  const r = await send(gw.gateway.admin!.port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  const m = parseExposition(r.text);
  assert.equal(m.get('netloom_gateway_request_duration_seconds_count{route="api"}'), n);
  // Every request took 6 ms or more: none is 2.5 ms or less, and the sum is at least n * 5 ms.
  const fast = m.get('netloom_gateway_request_duration_seconds_bucket{route="api",le="0.0025"}');
  const sum = m.get('netloom_gateway_request_duration_seconds_sum{route="api"}')!;
  const firstFast = m.get('netloom_gateway_upstream_first_byte_seconds_bucket{upstream="app",le="0.0025"}');
  assert.deepEqual(
    { fast, firstFast, sumAtLeast: sum >= n * 0.005 },
    { fast: 0, firstFast: 0, sumAtLeast: true },
    `requests of >= 6 ms observed at 0 ms (sum ${sum} s for ${n}): the coarse loop clock`,
  );
});
