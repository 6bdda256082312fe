// Issue 11, item 7: clients cannot eject every target. An upstream's 5xx answer counts as a passive failure
// only when its status is listed in passive.statuses; ejection is capped (maxEjectionPercent, 10% by
// default, at least one target); below panicThreshold usable targets, every target takes traffic.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { test } from 'node:test';
import { admin, type SnapshotView } from './fixtures/test-harness.ts';
import {
  gatewayConfig,
  httpUpstream,
  rawUpstream,
  send,
  startTestGateway,
  type TestUpstream,
  upstreamOf,
  waitUntil,
} from './support.ts';

/** `/boom` answers 500 (when `boom`), anything else 200 with the upstream's name. */
function named(name: string, boom = true): http.RequestListener {
  return (req, res) => {
    const status = boom && req.url === '/boom' ? 500 : 200;
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(name) });
    res.end(name);
  };
}

async function upstreams(t: { after(fn: () => unknown): void }, specs: [string, boolean][]) {
  const ups: (TestUpstream & { name: string })[] = [];
  for (const [name, boom] of specs) {
    const up = Object.assign(await httpUpstream(named(name, boom)), { name });
    t.after(() => up.close());
    ups.push(up);
  }
  return ups;
}

/** Sequential GETs of `path`, each on a fresh connection: [status, body] each. */
async function sequence(port: number, path: string, n: number): Promise<[number, string][]> {
  const out: [number, string][] = [];
  for (let i = 0; i < n; i++) {
    const r = await send(port, path);
    out.push([r.status, r.text]);
  }
  return out;
}

/** The loop's view of upstream `u` once a snapshot newer than `after` is published. */
async function view(adminPort: number, after: number): Promise<SnapshotView['upstreams'][string]> {
  let loops: (SnapshotView & { at: number })[] = [];
  await waitUntil(async () => {
    loops = (await admin<{ loops: (SnapshotView & { at: number })[] }>(adminPort, '/upstreams')).json.loops;
    return loops.length === 1 && loops[0]!.at > after;
  }, 3000);
  return loops[0]!.upstreams.u!;
}

test('the reproduction: 20 GET /boom answered 500 over two targets, then GET /ok is 200 (statuses do not count by default)', async (t) => {
  const [a, b] = await upstreams(t, [
    ['a', true],
    ['b', true],
  ]);
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([a!.address, b!.address]) }, [
      { name: 'all', match: { path: '/' }, upstream: 'u' },
    ]),
  );
  t.after(() => gw.stop());
  const booms = await sequence(gw.port, '/boom', 20);
  assert.deepEqual(
    booms.map(([s]) => s),
    Array(20).fill(500),
  );
  assert.equal(a!.requests + b!.requests, 20);
  const oks = await sequence(gw.port, '/ok', 10);
  assert.deepEqual(
    oks.map(([s]) => s),
    Array(10).fill(200),
  );
  assert.deepEqual(new Set(oks.map(([, body]) => body)), new Set(['a', 'b']), 'neither target was ejected');
});

test('ejection cap: with statuses [500] and the default 10%, at most one of two targets is ejected', async (t) => {
  const [a, b] = await upstreams(t, [
    ['a', true],
    ['b', true],
  ]);
  const gw = await startTestGateway(
    gatewayConfig(
      {
        u: upstreamOf([a!.address, b!.address], {
          passive: { consecutiveFailures: 1, ejectTime: 30_000, statuses: [500] },
        }),
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
      { admin: { address: '127.0.0.1:0' } },
    ),
  );
  t.after(() => gw.stop());
  const started = Date.now();
  const booms = await sequence(gw.port, '/boom', 20);
  assert.deepEqual(
    booms.map(([s]) => s),
    Array(20).fill(500),
  );
  const oks = await sequence(gw.port, '/ok', 10);
  assert.deepEqual(
    oks.map(([s]) => s),
    Array(10).fill(200),
  );
  assert.equal(new Set(oks.map(([, body]) => body)).size, 1, 'one target ejected, the other serves');
  const targets = await view(gw.gateway.admin!.port, started + 10);
  assert.deepEqual(targets.map((x) => x.ejected).sort(), [false, true]);
});

test('ejection cap: maxEjectionPercent 50 over four failing targets ejects exactly two', async (t) => {
  const ups = await upstreams(t, [
    ['a', true],
    ['b', true],
    ['c', true],
    ['d', true],
  ]);
  const gw = await startTestGateway(
    gatewayConfig(
      {
        u: upstreamOf(
          ups.map((u) => u.address),
          { passive: { consecutiveFailures: 1, ejectTime: 30_000, statuses: [500], maxEjectionPercent: 50 } },
        ),
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
      { admin: { address: '127.0.0.1:0' } },
    ),
  );
  t.after(() => gw.stop());
  const started = Date.now();
  await sequence(gw.port, '/boom', 20);
  const oks = await sequence(gw.port, '/ok', 12);
  assert.deepEqual(
    oks.map(([s]) => s),
    Array(12).fill(200),
  );
  assert.equal(new Set(oks.map(([, body]) => body)).size, 2);
  const targets = await view(gw.gateway.admin!.port, started + 10);
  assert.equal(targets.filter((x) => x.ejected).length, 2, JSON.stringify(targets));
});

for (const [threshold, both] of [
  [60, true],
  [0, false],
] as const) {
  test(`panic threshold ${threshold}: with one of two targets ejected, ${both ? 'both targets take traffic' : 'only the usable one does'}`, async (t) => {
    const [a, b] = await upstreams(t, [
      ['a', true],
      ['b', false],
    ]);
    const gw = await startTestGateway(
      gatewayConfig(
        {
          u: upstreamOf([a!.address, b!.address], {
            passive: { consecutiveFailures: 1, ejectTime: 30_000, statuses: [500], maxEjectionPercent: 50 },
            panicThreshold: threshold,
          }),
        },
        [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
        { admin: { address: '127.0.0.1:0' } },
      ),
    );
    t.after(() => gw.stop());
    const started = Date.now();
    // Only a answers /boom with 500: send until it has answered one.
    for (let i = 0; i < 4 && a!.requests === 0; i++) await send(gw.port, '/boom');
    assert.equal(a!.requests, 1);
    const targets = await view(gw.gateway.admin!.port, started + 10);
    assert.deepEqual(
      targets.map((x) => x.ejected),
      [true, false],
    );
    const oks = await sequence(gw.port, '/ok', 10);
    assert.deepEqual(
      oks.map(([s]) => s),
      Array(10).fill(200),
    );
    assert.deepEqual([...new Set(oks.map(([, body]) => body))].sort(), both ? ['a', 'b'] : ['b']);
  });
}

test('timeouts count: a target that never answers is ejected after consecutiveFailures, its requests retried', async (t) => {
  const [good] = await upstreams(t, [['good', false]]);
  const hang = await rawUpstream(() => {});
  t.after(() => hang.close());
  const gw = await startTestGateway(
    gatewayConfig(
      {
        u: upstreamOf([hang.address, good!.address], {
          timeouts: { firstByte: 100, total: 5000 },
          passive: { consecutiveFailures: 2, ejectTime: 30_000, maxEjectionPercent: 50 },
        }),
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'u' }],
    ),
  );
  t.after(() => gw.stop());
  const replies: [number, string][] = [];
  for (let i = 0; i < 10 && hang.requests < 2; i++) replies.push(...(await sequence(gw.port, '/x', 1)));
  assert.equal(hang.requests, 2);
  // Each timed-out GET went again to the good target.
  assert.deepEqual(
    replies.map(([s, body]) => `${s} ${body}`),
    Array(replies.length).fill('200 good'),
  );
  const oks = await sequence(gw.port, '/ok', 6);
  assert.deepEqual(
    oks.map(([s, body]) => `${s} ${body}`),
    Array(6).fill('200 good'),
  );
  assert.equal(hang.requests, 2, 'the ejected target got no more requests');
});
