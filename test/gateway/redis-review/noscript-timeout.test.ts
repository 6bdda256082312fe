// Review: a call on a Redis whose script cache is empty (a restarted Redis, a SCRIPT FLUSH, a failover to
// a replica) is EVALSHA, a NOSCRIPT error, then EVAL: two round trips, each with its own `commandTimeout`.
// A request can so wait up to twice the timeout, though "a request never waits longer than `timeout`".
// Redis is behind a proxy delaying each reply by 110 ms; the timeout is 150 ms.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RedisServer, startRedis } from '../redis-support.ts';
import { gatewayConfig, namedUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';
import { type DelayProxy, delayProxy } from './delay-proxy.ts';

const DELAY = 110;
const TIMEOUT = 150;

describe('NOSCRIPT fallback and the timeout', { timeout: 20_000 }, () => {
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

  test('after SCRIPT FLUSH, a request waits at most about the timeout on Redis', async (t) => {
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
            limits: [{ algorithm: 'token-bucket', key: [{ header: 'x-user' }], rate: 100 }],
            redis: { url: proxy.url, prefix: 'noscript:', timeout: TIMEOUT },
          },
        ],
      },
    ]);
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    // Let the connection come up (connect and ready check), so only the calls themselves are timed.
    await sleep(600);
    await redis.client().call('SCRIPT', 'FLUSH');
    const at = performance.now();
    const r = await send(gw.port, '/', { headers: { 'x-user': 'fresh' } });
    const ms = performance.now() - at;
    assert.equal(r.status, 200);
    const s = gw.gateway.limitStats().redis!;
    assert.equal(s.errors, 0, 'each round trip was within the timeout');
    assert.ok(ms < TIMEOUT + 50, `the request waited ${ms.toFixed(0)} ms with a ${TIMEOUT} ms timeout`);
  });
});
