// Cluster-wide rate limits on a real redis-server (issue 15): two gateway processes hold one token bucket
// under a bounded load; a sliding window is exact across two gateways; Redis killed mid-test fails open or
// closed as configured and never hangs a request; a Redis that stalls trips the breaker; a flood of refused
// requests costs Redis a handful of calls; keys expire; connections are kept across reloads and closed at
// stop; a bad URL is a configuration error at its path.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type LimitStats, validateConfig } from 'netloom/gateway';
import { gatewayProcess, type RedisServer, startRedis } from './redis-support.ts';
import {
  gatewayConfig,
  namedUpstream,
  pipelinedReplies,
  secondsAfterTheFirst,
  send,
  sendJson,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

const TOKEN = 'redis-test-admin-token-0123';

function limited(up: string, redis: Record<string, unknown>, limits: unknown[]) {
  return gatewayConfig({ up: upstreamOf([up]) }, [
    {
      name: 'api',
      match: { path: '/' },
      upstream: 'up',
      filters: [{ name: 'rate-limit', limits, redis }],
    },
  ]);
}

async function stats(admin: number): Promise<LimitStats> {
  const s = await sendJson<{ rateLimits: LimitStats }>(admin, '/stats', {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  return s.json.rateLimits;
}

describe('rate limits on Redis', () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.stop());

  test('two gateway processes (2 loops each) sharing one Redis admit a 500 req/s token bucket at 500 a second (within 3%)', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const config = limited(
      up.address, // A timeout loads of other tests cannot reach: this one measures accuracy, not failing open.
      { url: redis.url, prefix: 'two-proc:', timeout: 2000 },
      [{ algorithm: 'token-bucket', key: ['route'], rate: 500, burst: 50 }],
    );
    const a = await gatewayProcess(config);
    t.after(() => a.stop());
    const b = await gatewayProcess(config);
    t.after(() => b.stop());
    const started = Date.now();
    let admitted = 0;
    let refused = 0;
    let batches = 0;
    while (Date.now() - started < 4500) {
      const port = batches++ % 2 === 0 ? a.port : b.port;
      const replies = await pipelinedReplies(port, new Array(400).fill(''), 8, 50);
      for (const r of replies) {
        if (r.status === 200) admitted++;
        else if (r.status === 429) refused++;
        else assert.fail(`unexpected ${r.head}`);
      }
    }
    assert.ok(refused > admitted, `the load was above the rate (${admitted} admitted, ${refused} refused)`);
    assert.equal(up.requests, admitted);
    const { perSecond, median } = secondsAfterTheFirst(up.times);
    assert.ok(Math.abs(median - 500) <= 15, `admitted per second: ${perSecond.join(', ')}`);
    // Both processes spent the one budget, and asked Redis far less often than once a request.
    const sa = await stats(a.admin);
    const sb = await stats(b.admin);
    assert.ok(sa.redis && sb.redis, 'the stats show the Redis figures');
    assert.equal(sa.redis.errors + sb.redis.errors, 0);
    const calls = sa.redis.calls + sb.redis.calls;
    assert.ok(calls < (admitted + refused) / 10, `${calls} Redis calls for ${admitted + refused} requests`);
  });

  test('a sliding window is exact across two gateways: 30 in the window, the rest 429 with the RateLimit fields', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const config = limited(up.address, { url: redis.url, prefix: 'sw:', timeout: 2000 }, [
      { algorithm: 'sliding-window', name: 'per-10s', key: ['ip'], limit: 30, window: 10_000 },
    ]);
    const a = await startTestGateway(config);
    t.after(() => a.stop());
    const b = await startTestGateway(config);
    t.after(() => b.stop());
    const statuses: number[] = [];
    let last = null as Awaited<ReturnType<typeof send>> | null;
    for (let i = 0; i < 50; i++) {
      const r = await send(i % 2 === 0 ? a.port : b.port, '/');
      statuses.push(r.status);
      if (r.status === 429) last = r;
    }
    assert.equal(statuses.filter((s) => s === 200).length, 30, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 429).length, 20);
    assert.equal(up.requests, 30);
    assert.ok(last !== null);
    assert.equal(last.headers['ratelimit-policy'], '"per-10s";q=30;w=10');
    assert.match(String(last.headers.ratelimit), /^"per-10s";r=0;t=\d+$/);
    const retry = Number(last.headers['retry-after']);
    assert.ok(retry >= 1 && retry <= 10, `Retry-After ${retry}`);
    assert.deepEqual(JSON.parse(last.text), {
      error: 'rate limited',
      status: 429,
      limit: 'per-10s',
      retryAfter: retry,
    });
    // The window's state lives in Redis with an expiry (memory there stays bounded too).
    const c = redis.client();
    const keys = await c.keys('sw:*');
    assert.equal(keys.length, 1, keys.join(','));
    const ttl = await c.pttl(keys[0]!);
    assert.ok(ttl > 0 && ttl <= 20_000, `PTTL ${ttl}`);
  });

  for (const onFailure of ['open', 'closed'] as const) {
    test(`Redis killed mid-test, onFailure: ${onFailure}: every request answered at once (${onFailure === 'open' ? 'admitted' : '503'}), counted, and limits resume when Redis returns`, async (t) => {
      const up = await namedUpstream('ok');
      t.after(() => up.close());
      const config = limited(
        up.address,
        {
          url: redis.url,
          prefix: `kill-${onFailure}:`,
          timeout: 100,
          onFailure,
          breaker: { failures: 3, openTime: 300 },
        },
        [{ algorithm: 'token-bucket', key: ['route'], rate: 1, burst: 3 }],
      );
      config.admin = { address: '127.0.0.1:0', token: TOKEN };
      config.listeners = [{ address: '127.0.0.1:0', loops: 2 }];
      const gw = await startTestGateway(config);
      t.after(() => gw.stop());
      const before = [];
      for (let i = 0; i < 6; i++) before.push((await send(gw.port, '/')).status);
      assert.deepEqual(before, [200, 200, 200, 429, 429, 429]);

      await redis.kill();
      // The refusal Redis gave last is kept for its second: past it, each request needs Redis again.
      await sleep(1100);
      let restarted = false;
      t.after(async () => {
        if (!restarted) await redis.restart();
      });
      const during: number[] = [];
      for (let i = 0; i < 20; i++) {
        const at = performance.now();
        const r = await send(gw.port, '/');
        const ms = performance.now() - at;
        assert.ok(ms < 1000, `request ${i} took ${ms.toFixed(0)} ms`);
        during.push(r.status);
        if (onFailure === 'closed' && r.status === 503) {
          assert.equal(r.headers['retry-after'], '1');
          assert.deepEqual(JSON.parse(r.text), {
            error: 'rate limit unavailable',
            status: 503,
            limit: 'limit0',
          });
        }
      }
      // A lease or a refusal cached before the kill may answer the first ones as before.
      const tail = during.slice(-15);
      assert.deepEqual(tail, new Array(15).fill(onFailure === 'open' ? 200 : 503), during.join(','));
      const s = await stats(gw.gateway.admin!.port);
      assert.ok(s.redis !== undefined);
      assert.ok(s.redis.errors >= 3, `errors ${s.redis.errors}`);
      assert.ok(s.redis.breakerOpened >= 1, `breaker opened ${s.redis.breakerOpened}`);
      if (onFailure === 'open') assert.ok(s.redis.failOpen >= 15, `failOpen ${s.redis.failOpen}`);
      else assert.ok(s.redis.failClosed >= 15, `failClosed ${s.redis.failClosed}`);

      await redis.restart();
      restarted = true;
      // The breaker probes again after openTime and ioredis reconnects: the limit is back (an empty
      // Redis: a full bucket of 3, then refusals).
      await waitUntil(async () => (await send(gw.port, '/')).status === 429, 10_000);
      const afterwards = await send(gw.port, '/');
      assert.equal(afterwards.status, 429);
    });
  }

  test('a Redis that stalls (DEBUG SLEEP) costs a request at most the timeout, then the breaker answers at once', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const config = limited(
      up.address,
      { url: redis.url, prefix: 'stall:', timeout: 80, breaker: { failures: 2, openTime: 5000 } },
      [{ algorithm: 'token-bucket', key: [{ header: 'x-user' }], rate: 1000, burst: 1000 }],
    );
    config.admin = { address: '127.0.0.1:0', token: TOKEN };
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    assert.equal((await send(gw.port, '/', { headers: { 'x-user': 'warm' } })).status, 200);
    const blocker = redis.client();
    const sleeping = blocker.call('DEBUG', 'SLEEP', '1.5');
    await sleep(50);
    const times: number[] = [];
    for (let i = 0; i < 6; i++) {
      // A new user each time: no lease to spend, so each one needs Redis.
      const at = performance.now();
      const r = await send(gw.port, '/', { headers: { 'x-user': `u${i}` } });
      times.push(performance.now() - at);
      assert.equal(r.status, 200, 'fails open by default');
    }
    await sleeping;
    assert.ok(times[0]! >= 60 && times[0]! < 500, `the first waited for the timeout: ${times.join(', ')}`);
    // Two timeouts opened the breaker: the rest did not wait.
    for (const ms of times.slice(2)) assert.ok(ms < 60, `after the breaker opened: ${times.join(', ')}`);
    const s = await stats(gw.gateway.admin!.port);
    assert.equal(s.redis!.calls, 3, 'the warm-up and the two timed-out calls; none while open');
    assert.equal(s.redis!.breakerOpened, 1);
  });

  test('a flood of refused requests costs Redis one call a refusal spell, not one a request', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const config = limited(up.address, { url: redis.url, prefix: 'flood:', timeout: 2000 }, [
      { algorithm: 'sliding-window', key: ['route'], limit: 10, window: 60_000 },
    ]);
    config.admin = { address: '127.0.0.1:0', token: TOKEN };
    config.listeners = [{ address: '127.0.0.1:0', loops: 2 }];
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    const replies = await pipelinedReplies(gw.port, new Array(3000).fill(''), 8, 100);
    assert.equal(replies.filter((r) => r.status === 200).length, 10);
    assert.equal(replies.filter((r) => r.status === 429).length, 2990);
    const s = await stats(gw.gateway.admin!.port);
    assert.ok(s.redis!.calls <= 40, `${s.redis!.calls} calls`);
    assert.equal(s.rejected.api, 2990);
  });

  test('reloads keep one connection a loop; stopping closes them', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const c = redis.client();
    const ours = async () =>
      String(await c.call('CLIENT', 'LIST'))
        .split('\n')
        .filter((l: string) => l.includes('name=netloom-rate-limit')).length;
    const config = limited(up.address, { url: redis.url, prefix: 'reload:' }, [
      { algorithm: 'token-bucket', key: ['ip'], rate: 100 },
    ]);
    config.listeners = [{ address: '127.0.0.1:0', loops: 2 }];
    const gw = await startTestGateway(config);
    let stopped = false;
    t.after(() => (stopped ? undefined : gw.stop()));
    assert.equal((await send(gw.port, '/')).status, 200);
    await waitUntil(async () => (await ours()) === 2, 5000);
    for (let i = 0; i < 5; i++) {
      const next = limited(up.address, { url: redis.url, prefix: 'reload:' }, [
        { algorithm: 'token-bucket', key: ['ip'], rate: 101 + i },
      ]);
      next.listeners = config.listeners;
      await gw.source.set(next);
      const result = await gw.gateway.reload();
      assert.ok(result.ok && result.changed, JSON.stringify(result));
      assert.equal((await send(gw.port, '/')).status, 200);
    }
    await sleep(200);
    assert.equal(await ours(), 2, 'one connection a loop after 5 reloads');
    await gw.stop();
    stopped = true;
    await waitUntil(async () => (await ours()) === 0, 5000);
  });

  test('a bad Redis setting is a configuration error at its path', () => {
    const bad = (redis: unknown) => {
      try {
        validateConfig(
          limited('127.0.0.1:1', redis as Record<string, unknown>, [{ algorithm: 'token-bucket', rate: 1 }]),
        );
      } catch (e) {
        return (e as { problems: string[] }).problems.join('\n');
      }
      return 'accepted';
    };
    assert.match(bad({ url: 'http://127.0.0.1:6379' }), /routes\.0\.filters\.0\.redis\.url/);
    assert.match(bad({ url: 'redis://127.0.0.1:6379', onFailure: 'maybe' }), /redis\.onFailure/);
    assert.match(bad({ url: 'redis://127.0.0.1:6379', timeout: 0 }), /redis\.timeout/);
    assert.match(bad({ url: 'redis://127.0.0.1:6379', lease: { tokens: 0 } }), /redis\.lease\.tokens/);
    assert.equal(bad({ url: 'redis://127.0.0.1:6379' }), 'accepted');
  });
});
