// Review: a request that finds no lease waits on Redis for up to LEASE_ROUNDS (4) lease requests in a
// row when other requests of the loop spend each lease first. With small leases and a few concurrent
// requests of one key, (a) the fifth and later are refused 429 (Retry-After 1) though Redis has plenty of
// budget left, and (b) a request waits several `timeout`s on Redis although "a request never waits longer
// than `timeout` on Redis". Redis sits behind a proxy that delays each reply by 80 ms (timeout 150 ms), so
// every call succeeds within the timeout.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RedisServer, startRedis } from '../redis-support.ts';
import { gatewayConfig, namedUpstream, send, startTestGateway, upstreamOf } from '../support.ts';
import { type DelayProxy, delayProxy } from './delay-proxy.ts';

const DELAY = 80;
const TIMEOUT = 150;

describe('lease rounds on a slowish Redis', { timeout: 30_000 }, () => {
  let redis: RedisServer;
  let proxy: DelayProxy;
  before(async () => {
    redis = await startRedis();
    proxy = await delayProxy(redis.port, DELAY);
  });
  after(async () => {
    await proxy.close();
    await redis.stop();
  });

  async function gateway(t: { after: (fn: () => unknown) => void }, prefix: string) {
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
            // 1,000 a second, burst 1,000: eight requests are nowhere near the limit.
            limits: [{ algorithm: 'token-bucket', key: ['route'], rate: 1000, burst: 1000 }],
            redis: { url: proxy.url, prefix, timeout: TIMEOUT, lease: { tokens: 1 } },
          },
        ],
      },
    ]);
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    // Warm the connection and load the script (one token of the budget).
    assert.equal((await send(gw.port, '/')).status, 200);
    return gw;
  }

  test('eight concurrent requests under a 1,000 req/s limit are all admitted', async (t) => {
    const gw = await gateway(t, 'rounds-a:');
    const replies = await Promise.all(Array.from({ length: 8 }, () => send(gw.port, '/')));
    const statuses = replies.map((r) => r.status);
    const refused = replies.find((r) => r.status === 429);
    assert.deepEqual(
      statuses,
      new Array(8).fill(200),
      `statuses ${statuses.join(',')}; a refusal said Retry-After ${refused?.headers['retry-after']}`,
    );
  });

  test(`no request waits much longer than the timeout (${TIMEOUT} ms) on Redis`, async (t) => {
    const gw = await gateway(t, 'rounds-b:');
    const times = await Promise.all(
      Array.from({ length: 4 }, async () => {
        const at = performance.now();
        const r = await send(gw.port, '/');
        return { ms: performance.now() - at, status: r.status };
      }),
    );
    const worst = Math.max(...times.map((x) => x.ms));
    // Fixed as documented: another round starts only within the timeout, so a request waits two calls at
    // most (the second starting before the timeout ran out), not several.
    assert.ok(
      worst < 2 * TIMEOUT + 60,
      `waits: ${times.map((x) => `${x.ms.toFixed(0)} ms (${x.status})`).join(', ')}`,
    );
  });
});
