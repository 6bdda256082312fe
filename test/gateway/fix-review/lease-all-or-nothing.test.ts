// Fix review (843ffcf): requests of one loop that find a key's lease empty now join one Redis call that
// asks for "a token each of them (at least a lease)". Both scripts grant all or nothing, so when Redis
// holds fewer tokens than the group asked for, it refuses the whole call: `leaseDeny` then refuses every
// waiter 429, though Redis had a token for most of them. Redis here sits behind a proxy delaying each reply
// by 100 ms (timeout 1 s), so every call succeeds in time. The limit: 1 a second, burst 10 (lease 1).
// One request spends a token; R0 starts a call for one token; ten more arrive while it is on its way and
// join it; its single token goes to R0, and the ten go round again together, asking for 10 when about 8
// are left: all ten are refused.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type DelayProxy, delayProxy } from '../redis-review/delay-proxy.ts';
import { type RedisServer, startRedis } from '../redis-support.ts';
import { gatewayConfig, namedUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

describe('fix-review: a group of lease waiters on a nearly spent bucket', { timeout: 30_000 }, () => {
  let redis: RedisServer;
  let proxy: DelayProxy;
  before(async () => {
    redis = await startRedis();
    proxy = await delayProxy(redis.port, 100);
  });
  after(async () => {
    await proxy.close();
    await redis.stop();
  });

  test('the tokens Redis still holds are handed out, not refused with the group', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address]) }, [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'up',
          filters: [
            {
              name: 'rate-limit',
              limits: [{ algorithm: 'token-bucket', key: ['route'], rate: 1, burst: 10 }],
              redis: { url: proxy.url, prefix: 'fix-review-group:', timeout: 1000 },
            },
          ],
        },
      ]),
    );
    t.after(() => gw.stop());
    // One token of ten spent (and the connection warm).
    assert.equal((await send(gw.port, '/')).status, 200);
    const first = send(gw.port, '/');
    await sleep(30);
    const group = await Promise.all(Array.from({ length: 10 }, () => send(gw.port, '/')));
    assert.equal((await first).status, 200);
    const statuses = group.map((r) => r.status);
    const admitted = statuses.filter((s) => s === 200).length;
    // About 8 tokens are left in the bucket (10 - 2, plus what a second refills meanwhile).
    assert.ok(
      admitted >= 7,
      `admitted ${admitted} of 10 with ~8 tokens left in Redis: ${statuses.join(',')}`,
    );
  });
});
