// Review (fixed by stating the bound per loop): "all loops draw on one lease" and "the cluster never admits more than the limit plus one lease
// per process in any burst". Each loop has its own map of lease requests on their way, so two loops that
// find the lease empty at once each fetch a whole lease: the process then holds two. Kept (lease.ttl 5 s)
// past the bucket's refill, they are spent on top of a full burst: one process alone admits the burst plus
// about two leases.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RedisServer, startRedis } from '../redis-support.ts';
import {
  gatewayConfig,
  namedUpstream,
  pipelinedReplies,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
} from '../support.ts';

const RATE = 100;
const BURST = 100;
const LEASE = 50;
const LOOPS = 4;

describe('leases held by several loops of one process', { timeout: 30_000 }, () => {
  let redis: RedisServer;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.stop());

  test('one process admits at most the burst plus one lease a loop (plus the rate over the burst)', async (t) => {
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
            limits: [{ algorithm: 'token-bucket', key: ['route'], rate: RATE, burst: BURST }],
            redis: { url: redis.url, prefix: 'loops:', timeout: 2000, lease: { tokens: LEASE, ttl: 5000 } },
          },
        ],
      },
    ]);
    config.listeners = [{ address: '127.0.0.1:0', loops: LOOPS }];
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    // Let every loop's connection come up.
    await sleep(300);
    // Phase 1: Redis stalls 300 ms while one request reaches each loop: every loop asks for a lease.
    const sleeping = redis.client().call('DEBUG', 'SLEEP', '0.3');
    await sleep(30);
    const first = await Promise.all(Array.from({ length: 8 }, () => send(gw.port, '/')));
    await sleeping;
    assert.deepEqual(
      first.map((r) => r.status),
      new Array(8).fill(200),
    );
    // Phase 2: the bucket refills completely; the leases are still valid.
    await sleep(1200);
    const before = up.requests;
    const replies = await pipelinedReplies(gw.port, new Array(600).fill(''), 8, 75);
    const admitted = replies.filter((r) => r.status === 200).length;
    assert.equal(up.requests - before, admitted);
    const times = up.times.slice(before);
    const spanMs = times.length > 1 ? times[times.length - 1]! - times[0]! : 0;
    // Fixed by documenting the bound as one lease per loop (each loop that finds the lease empty fetches
    // one): the process may hold LOOPS leases, never more.
    const bound = BURST + LOOPS * LEASE + Math.ceil((RATE * spanMs) / 1000) + 2;
    assert.ok(
      admitted <= bound,
      `${admitted} admitted in ${spanMs.toFixed(0)} ms; the bound (burst + one lease a loop + rate x span) is ${bound}`,
    );
  });
});
