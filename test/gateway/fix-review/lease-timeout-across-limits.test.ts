// Fix review (843ffcf): `viaRedis` starts its clock once for all the limits of the filter and, before each
// round, treats "`timeout` spent since the request started" as Redis being unavailable. A request whose
// several limits each need a lease waits one call per limit, so with three limits and a Redis answering
// every call in time (80 ms of a 150 ms timeout), the third limit is never asked: `onFailure: closed`
// answers 503 "rate limit unavailable" (counted as failClosed) though Redis never failed or was slow.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type DelayProxy, delayProxy } from '../redis-review/delay-proxy.ts';
import { type RedisServer, startRedis } from '../redis-support.ts';
import { gatewayConfig, namedUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

describe('fix-review: the Redis wait bound across several limits', { timeout: 30_000 }, () => {
  let redis: RedisServer;
  let proxy: DelayProxy;
  before(async () => {
    redis = await startRedis();
    proxy = await delayProxy(redis.port, 80);
  });
  after(async () => {
    await proxy.close();
    await redis.stop();
  });

  test('a request under three generous limits is admitted while Redis answers each call in time', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const limit = (name: string) => ({ name, algorithm: 'token-bucket', key: ['route'], rate: 1000 });
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address]) }, [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'up',
          filters: [
            {
              name: 'rate-limit',
              limits: [limit('one'), limit('two'), limit('three')],
              redis: { url: proxy.url, prefix: 'fix-review-three:', timeout: 150, onFailure: 'closed' },
            },
          ],
        },
      ]),
    );
    t.after(() => gw.stop());
    // The store's connection (and its ready check, through the proxy) is up before the request.
    await sleep(500);
    const r = await send(gw.port, '/');
    assert.equal(r.status, 200, `Redis answered every call within 80 ms of 150; got ${r.status} ${r.text}`);
  });
});
