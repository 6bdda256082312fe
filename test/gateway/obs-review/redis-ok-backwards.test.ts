// Review of the gateway metrics: netloom_gateway_rate_limit_redis_calls_total{result="ok"} is computed at
// the scrape as calls - errors, but `calls` counts a call when it is sent and `errors` when it fails. A
// call in flight is counted "ok"; when it then times out, "ok" drops by one: a counter that goes backwards
// between two scrapes (Prometheus reads it as a reset).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { parseExposition } from '../../fixtures/prometheus.ts';
import { type RedisServer, startRedis } from '../redis-support.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';
const OK = 'netloom_gateway_rate_limit_redis_calls_total{result="ok"}';

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(() => redis.stop());

test('redis_calls_total{result="ok"} never decreases while Redis stalls', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig(
      { app: upstreamOf([up.address]) },
      [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'app',
          filters: [
            {
              name: 'rate-limit',
              limits: [{ algorithm: 'token-bucket', key: ['route'], rate: 1000, burst: 1 }],
              redis: { url: redis.url, prefix: 'ok-backwards:', timeout: 400, onFailure: 'open' },
            },
          ],
        },
      ],
      { admin: { address: '127.0.0.1:0', token: TOKEN } },
    ),
  );
  t.after(() => gw.stop());
  const scrape = async () =>
    parseExposition(
      (await send(gw.gateway.admin!.port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } }))
        .text,
    ).get(OK) ?? 0;
  assert.equal((await send(gw.port, '/warm')).status, 200);
  const blocker = redis.client();
  const stall = blocker.call('DEBUG', 'SLEEP', '1.2').catch(() => undefined);
  await sleep(50);
  const pending = send(gw.port, '/during'); // its Redis call waits behind the stall, then times out
  const seen: number[] = [];
  for (let i = 0; i < 8; i++) {
    await sleep(100);
    seen.push(await scrape());
  }
  await pending;
  await stall;
  for (let i = 1; i < seen.length; i++)
    assert.ok(seen[i]! >= seen[i - 1]!, `the "ok" counter went backwards: ${seen.join(' -> ')}`);
});
