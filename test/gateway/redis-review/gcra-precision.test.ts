// Review: the token-bucket Lua script compares `(tat + n * interval) - now` with `burst * interval` on
// doubles of about 1.8e12 ms. When the lease equals the burst (burst 1, or lease.tokens >= burst), the
// rounding of `now + interval` can land a few nanoseconds above the tolerance: with rate 7 (interval
// 142.857... ms) it always does, so a full, idle bucket refuses every request, forever.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RedisServer, startRedis } from '../redis-support.ts';
import { gatewayConfig, namedUpstream, send, startTestGateway, upstreamOf } from '../support.ts';

describe('GCRA float precision on Redis', { timeout: 20_000 }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.stop());

  for (const rate of [6, 7]) {
    test(`a token bucket of rate ${rate}, burst 1 admits the first request of an idle key`, async (t) => {
      const up = await namedUpstream('ok');
      t.after(() => up.close());
      const config = gatewayConfig({ up: upstreamOf([up.address]) }, [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'up',
          filters: [
            {
              name: 'rate-limit',
              limits: [{ algorithm: 'token-bucket', key: ['route'], rate, burst: 1 }],
              redis: { url: redis.url, prefix: `gcra-${rate}:`, timeout: 1000 },
            },
          ],
        },
      ]);
      const gw = await startTestGateway(config);
      t.after(() => gw.stop());
      const statuses: number[] = [];
      // One request a second is well under the rate: every one should pass.
      for (let i = 0; i < 3; i++) {
        statuses.push((await send(gw.port, '/')).status);
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.deepEqual(statuses, [200, 200, 200], `statuses on Redis: ${statuses.join(',')}`);
    });
  }
});
