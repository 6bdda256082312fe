// Review (gov-review): defects of the rate-limit filter, each a failing test over real sockets.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  gatewayConfig,
  namedUpstream,
  pipelinedReplies,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
} from '../support.ts';

describe('gov-review: rate-limit defects', { timeout: 30_000 }, () => {
  test('two rate-limit filters with concurrency on one route: each gives its own place back', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address]) }, [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'up',
          filters: [
            // e.g. a per-address bound and a per-app bound, as two filter entries
            { name: 'rate-limit', concurrency: { name: 'per-ip', max: 1 } },
            { name: 'rate-limit', concurrency: { name: 'per-app', key: [{ header: 'x-app' }], max: 10 } },
          ],
        },
      ]),
    );
    t.after(() => gw.stop());
    const statuses: number[] = [];
    // Sequential requests, each answered (200) before the next: never more than 1 in flight.
    for (let i = 0; i < 3; i++)
      statuses.push((await send(gw.port, '/', { headers: { 'x-app': 'a' } })).status);
    assert.deepEqual(statuses, [200, 200, 200]);
  });

  test('sliding window: a client that waits Retry-After seconds is admitted', async (t) => {
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
              limits: [{ algorithm: 'sliding-window', name: 'w', limit: 2, window: 4000 }],
            },
          ],
        },
      ]),
    );
    t.after(() => gw.stop());
    const first = await pipelinedReplies(gw.port, ['', '', ''], 1, 3);
    assert.deepEqual(
      first.map((r) => r.status),
      [200, 200, 429],
    );
    const retry = Number(/retry-after: (\d+)/i.exec(first[2]!.head)?.[1]);
    // A full window weighs on the next one too: the wait may pass the window (here about 6 s).
    assert.ok(retry >= 1 && retry <= 8, first[2]!.head);
    await sleep(retry * 1000 + 50);
    const again = await send(gw.port, '/');
    assert.equal(
      again.status,
      200,
      `told Retry-After: ${retry}, waited that long, refused again with Retry-After: ${again.headers['retry-after']}`,
    );
  });

  test('a `domain` key is one budget for the routes of that domain', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const limited = {
      name: 'rate-limit',
      limits: [{ algorithm: 'sliding-window', name: 'video', key: ['domain'], limit: 3, window: 60_000 }],
    };
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address]) }, [
        { name: 'a', domain: 'video', match: { path: '/a' }, upstream: 'up', filters: [limited] },
        { name: 'b', domain: 'video', match: { path: '/b' }, upstream: 'up', filters: [limited] },
      ]),
    );
    t.after(() => gw.stop());
    const statuses: number[] = [];
    for (const p of ['/a', '/a', '/a', '/b', '/b']) statuses.push((await send(gw.port, p)).status);
    // Keyed by domain alone, the 3 requests of the "video" domain are spent on /a: /b is refused.
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
  });

  test('token bucket: RateLimit-Policy states the rate it enforces (q / w = rate)', async (t) => {
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
              limits: [{ algorithm: 'token-bucket', name: 'tb', rate: 10, burst: 1 }],
            },
          ],
        },
      ]),
    );
    t.after(() => gw.stop());
    // Admitted in one second at 10 requests a second: ~10.
    let admitted = 0;
    let policy = '';
    const started = Date.now();
    while (Date.now() - started < 1000) {
      const r = await send(gw.port, '/');
      if (r.status === 200) admitted++;
      else policy = String(r.headers['ratelimit-policy']);
      await sleep(20);
    }
    assert.ok(admitted >= 8, `${admitted} admitted in a second`);
    const m = /^"tb";q=(\d+);w=(\d+)$/.exec(policy);
    assert.ok(m, policy);
    const q = Number(m[1]);
    const w = Number(m[2]);
    assert.ok(
      q / w >= 9,
      `RateLimit-Policy: ${policy} advertises ${q} per ${w} s, yet ${admitted} were admitted in 1 s`,
    );
  });
});
