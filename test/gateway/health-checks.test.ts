// Issue 11, item 13: active health checks have an in-flight guard (a check slower than the interval delays
// the next, it never piles up), survive reloads that do not change them (no restart, no extra check), and a
// target whose weight changes keeps its health and its pooled connections.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { test } from 'node:test';
import { ConfigError, validateConfig } from 'netloom/gateway';
import {
  gatewayConfig,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  type TestUpstream,
  upstreamOf,
  waitUntil,
} from './support.ts';

interface CheckedUpstream extends TestUpstream {
  name: string;
  checks: number;
  inFlight: number;
  maxInFlight: number;
}

/** An upstream whose /health answers `healthStatus` after `healthMs`; anything else answers its name. */
async function checkedUpstream(
  t: { after(fn: () => unknown): void },
  name: string,
  healthMs = 0,
  healthStatus = 200,
): Promise<CheckedUpstream> {
  const handler: http.RequestListener = (req, res) => {
    if (req.url !== '/health') {
      res.writeHead(200, { 'content-length': Buffer.byteLength(name) });
      res.end(name);
      return;
    }
    up.checks++;
    up.inFlight++;
    up.maxInFlight = Math.max(up.maxInFlight, up.inFlight);
    let open = true;
    const done = () => {
      if (!open) return;
      open = false;
      up.inFlight--;
    };
    res.on('close', done);
    setTimeout(() => {
      if (!open) return;
      res.writeHead(healthStatus, { 'content-length': 0 });
      res.end();
    }, healthMs);
  };
  const base = await httpUpstream(handler);
  const up: CheckedUpstream = Object.assign(base, { name, checks: 0, inFlight: 0, maxInFlight: 0 });
  t.after(() => up.close());
  return up;
}

/** Bodies of `n` sequential GETs (fresh client connections). */
async function names(port: number, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await send(port, '/x')).text);
  return out;
}

test('interval 10 ms and a check that takes 500 ms: never more than one check in flight per target', async (t) => {
  const a = await checkedUpstream(t, 'a', 500);
  const b = await checkedUpstream(t, 'b', 500);
  const gw = await startTestGateway(
    gatewayConfig(
      {
        u: upstreamOf([a.address, b.address], {
          healthCheck: { path: '/health', interval: 10, timeout: 2000 },
        }),
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
    ),
  );
  t.after(() => gw.stop());
  await sleep(1300);
  for (const up of [a, b]) {
    assert.equal(up.maxInFlight, 1, `${up.name}: ${up.maxInFlight} checks in flight at once`);
    assert.ok(up.checks >= 2 && up.checks <= 4, `${up.name}: ${up.checks} checks in 1.3 s`);
  }
});

test('checks that time out do not pile up either', async (t) => {
  const a = await checkedUpstream(t, 'a', 5000);
  const gw = await startTestGateway(
    gatewayConfig(
      { u: upstreamOf([a.address], { healthCheck: { path: '/health', interval: 10, timeout: 100 } }) },
      [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
    ),
  );
  t.after(() => gw.stop());
  await sleep(1000);
  // One every ~110 ms (timeout, then the next tick); the upstream may see the next before the last's close.
  assert.ok(a.checks >= 4 && a.checks <= 12, `${a.checks} checks in 1 s`);
  assert.ok(a.maxInFlight <= 2, `${a.maxInFlight} checks in flight at once`);
});

test('a reload that does not change a health check does not restart it; one that does restarts only that one', async (t) => {
  const u = await checkedUpstream(t, 'u');
  const w = await checkedUpstream(t, 'w');
  const config = (tag: string, wInterval: number) =>
    gatewayConfig(
      {
        u: upstreamOf([u.address], { healthCheck: { path: '/health', interval: 1000 } }),
        w: upstreamOf([w.address], { healthCheck: { path: '/health', interval: wInterval } }),
      },
      [
        { name: 'u', match: { path: '/u' }, upstream: 'u', responseHeaders: { add: { 'x-tag': tag } } },
        { name: 'w', match: { path: '/w' }, upstream: 'w' },
      ],
    );
  const gw = await startTestGateway(config('v1', 1000));
  t.after(() => gw.stop());
  await waitUntil(() => u.checks === 1 && w.checks === 1, 500, 'the first checks');
  for (let k = 2; k <= 6; k++) {
    gw.source.set(config(`v${k}`, 1000));
    const r = await gw.gateway.reload();
    assert.equal(r.ok && r.changed, true);
    await sleep(40);
  }
  assert.equal((await send(gw.port, '/u')).headers['x-tag'], 'v6');
  assert.equal(u.checks, 1, 'u: no check restarted by reloads that did not change it');
  assert.equal(w.checks, 1, 'w: likewise');
  // Now w's check changes: it restarts (a check at once), u's does not.
  gw.source.set(config('v7', 900));
  assert.equal((await gw.gateway.reload()).ok, true);
  await waitUntil(() => w.checks === 2, 500, "w's restarted check");
  await sleep(50);
  assert.equal(u.checks, 1);
});

test("changing a target's weight keeps its health: an unhealthy target stays out of rotation", async (t) => {
  const a = await checkedUpstream(t, 'a');
  const b = await checkedUpstream(t, 'b', 0, 503);
  const config = (weight: number) =>
    gatewayConfig(
      {
        u: {
          targets: [{ address: a.address }, { address: b.address, weight }],
          healthCheck: {
            path: '/health',
            interval: 200,
            timeout: 500,
            unhealthyThreshold: 3,
            healthyThreshold: 3,
          },
        },
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
    );
  const gw = await startTestGateway(config(1));
  t.after(() => gw.stop());
  // b fails its checks: out after three.
  await waitUntil(async () => (await names(gw.port, 4)).every((n) => n === 'a'), 3000, 'b marked unhealthy');
  gw.source.set(config(5));
  const r = await gw.gateway.reload();
  assert.equal(r.ok && r.changed, true);
  // Right after the reload (a restarted check would need three failures, ~400 ms, to find b out again).
  assert.deepEqual(await names(gw.port, 10), Array(10).fill('a'));
});

test("changing a target's weight keeps its pooled connections", async (t) => {
  const up = await checkedUpstream(t, 'u');
  const config = (weight: number) =>
    gatewayConfig({ u: { targets: [{ address: up.address, weight }] } }, [
      { name: 'all', match: { path: '/' }, upstream: 'u' },
    ]);
  const gw = await startTestGateway(config(1));
  t.after(() => gw.stop());
  assert.deepEqual(await names(gw.port, 5), Array(5).fill('u'));
  assert.equal(up.connections, 1);
  for (const weight of [7, 3]) {
    gw.source.set(config(weight));
    assert.equal((await gw.gateway.reload()).ok, true);
    assert.deepEqual(await names(gw.port, 5), Array(5).fill('u'));
  }
  assert.equal(up.connections, 1, 'the same pooled connection served every request');
});

test('a health-check interval above the timer range (2^31 ms) is refused, or at least does not check every millisecond', async (t) => {
  const up = await checkedUpstream(t, 'u');
  const config = gatewayConfig(
    { u: upstreamOf([up.address], { healthCheck: { path: '/health', interval: 2 ** 31 } }) },
    [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
  );
  try {
    validateConfig(config);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    assert.ok(
      err.problems.some((p) => p.startsWith('upstreams.u.healthCheck.interval: ')),
      err.message,
    );
    return;
  }
  const gw = await startTestGateway(config);
  t.after(() => gw.stop());
  await sleep(300);
  assert.ok(up.checks <= 1, `${up.checks} checks in 300 ms with an interval of 2^31 ms`);
});
