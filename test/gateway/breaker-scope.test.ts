// Circuit breaking beyond one route (issue 15): a circuit per upstream shared by its routes, a degraded
// upstream as the fallback, low-priority routes cut first, circuits on the admin endpoint and in the
// completion record, `useUpstream` for filters, and the upstreams' retry budget.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { validateConfig } from 'netloom/gateway';
import { records } from './fixtures/governance-filters.ts';
import {
  gatewayConfig,
  httpUpstream,
  send,
  sendJson,
  sleep,
  startTestGateway,
  upstreamOf,
} from './support.ts';

const PLUGIN = new URL('./fixtures/governance-filters.ts', import.meta.url);
const TOKEN = 'breaker-scope-admin-token-01';

/** An upstream whose answers the test switches: 200, or 500; `failEvery` fails 3 in each 10. */
async function switchable(name: string) {
  const mode = { status: 200, failEvery: false };
  let n = 0;
  const up = await httpUpstream((_req, res) => {
    const status = mode.failEvery ? (n++ % 10 < 3 ? 500 : 200) : mode.status;
    res.writeHead(status).end(name);
  });
  return Object.assign(up, { mode });
}

const breaker = (extra: Record<string, unknown> = {}) => ({
  name: 'circuit-breaker',
  window: 5000,
  minimumRequests: 10,
  failureRate: 50,
  openTime: 400,
  halfOpenRequests: 2,
  ...extra,
});

describe('circuit breaking per upstream', () => {
  test('scope upstream: failures through one route open the circuit for every route of that upstream', async (t) => {
    const up = await switchable('up');
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address], { retries: 0 }) }, [
        { name: 'a', match: { path: '/a' }, upstream: 'up', filters: [breaker({ scope: 'upstream' })] },
        { name: 'b', match: { path: '/b' }, upstream: 'up', filters: [breaker({ scope: 'upstream' })] },
        { name: 'c', match: { path: '/c' }, upstream: 'up', filters: [breaker()] },
      ]),
    );
    t.after(() => gw.stop());
    up.mode.status = 500;
    for (let i = 0; i < 10; i++) assert.equal((await send(gw.port, '/a')).status, 500);
    const seen = up.requests;
    const b = await send(gw.port, '/b');
    assert.equal(b.status, 503, 'route b shares the open circuit');
    assert.deepEqual(JSON.parse(b.text), { error: 'circuit open', status: 503, route: 'b' });
    assert.equal(up.requests, seen);
    // A route whose breaker is its own counted nothing of a's failures.
    assert.equal((await send(gw.port, '/c')).status, 500);
  });

  test('a degraded upstream serves while the circuit is open; probes go to the primary and close it', async (t) => {
    const primary = await switchable('primary');
    t.after(() => primary.close());
    const degraded = await switchable('degraded');
    t.after(() => degraded.close());
    records.length = 0;
    const gw = await startTestGateway(
      gatewayConfig(
        {
          primary: upstreamOf([primary.address], { retries: 0 }),
          degraded: upstreamOf([degraded.address], { retries: 0 }),
        },
        [
          {
            name: 'api',
            match: { path: '/' },
            upstream: 'primary',
            filters: [{ name: 'record-keeper' }, breaker({ fallback: { upstream: 'degraded' } })],
          },
        ],
        { admin: { address: '127.0.0.1:0', token: TOKEN } },
      ),
      { plugins: [PLUGIN] },
    );
    t.after(() => gw.stop());
    primary.mode.status = 500;
    for (let i = 0; i < 10; i++) assert.equal((await send(gw.port, '/')).status, 500);
    const seen = primary.requests;
    for (let i = 0; i < 5; i++) {
      const r = await send(gw.port, '/');
      assert.equal(r.status, 200);
      assert.equal(r.text, 'degraded');
    }
    assert.equal(primary.requests, seen, 'nothing reached the primary while open');
    const open = records.slice(-5);
    for (const r of open) assert.deepEqual([r.upstream, r.circuit], ['degraded', 'open']);
    const admin = gw.gateway.admin!.port;
    const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
    const during = await sendJson<{ circuits: Record<string, Record<string, number>> }>(
      admin,
      '/stats',
      auth,
    );
    assert.deepEqual(during.json.circuits['route:api#0'], {
      openLoops: 1,
      opened: 1,
      halfOpened: 0,
      closed: 0,
      fallbacks: 5,
      shed: 0,
    });
    // Recovered: after openTime, two probes reach the primary and close the circuit.
    primary.mode.status = 200;
    await sleep(450);
    for (let i = 0; i < 4; i++) assert.equal((await send(gw.port, '/')).text, 'primary');
    const probes = records.slice(-4);
    assert.deepEqual(
      probes.map((r) => r.circuit),
      ['half-open', 'half-open', 'closed', 'closed'],
    );
    const after = await sendJson<{ circuits: Record<string, Record<string, number>> }>(admin, '/stats', auth);
    assert.deepEqual(after.json.circuits['route:api#0'], {
      openLoops: 0,
      opened: 1,
      halfOpened: 1,
      closed: 1,
      fallbacks: 5,
      shed: 0,
    });
  });

  test('priority low: a non-core route is cut at shedRate while the circuit stays closed for the core one', async (t) => {
    const up = await switchable('up');
    t.after(() => up.close());
    records.length = 0;
    const gw = await startTestGateway(
      gatewayConfig(
        { up: upstreamOf([up.address], { retries: 0 }) },
        [
          {
            name: 'core',
            match: { path: '/core' },
            upstream: 'up',
            filters: [{ name: 'record-keeper' }, breaker({ scope: 'upstream', failureRate: 60 })],
          },
          {
            name: 'extras',
            match: { path: '/extras' },
            upstream: 'up',
            filters: [
              { name: 'record-keeper' },
              breaker({ scope: 'upstream', failureRate: 60, priority: 'low', shedRate: 20 }),
            ],
          },
        ],
        { admin: { address: '127.0.0.1:0', token: TOKEN } },
      ),
      { plugins: [PLUGIN] },
    );
    t.after(() => gw.stop());
    // Healthy: both routes flow.
    assert.equal((await send(gw.port, '/extras')).status, 200);
    up.mode.failEvery = true; // 30% of answers fail: above extras' 20%, below the circuit's 60%
    for (let i = 0; i < 20; i++) await send(gw.port, '/core');
    const seen = up.requests;
    const extras = await send(gw.port, '/extras');
    assert.equal(extras.status, 503);
    assert.deepEqual(JSON.parse(extras.text), { error: 'shed', status: 503, route: 'extras' });
    assert.equal(up.requests, seen, 'the cut request did not reach the upstream');
    assert.equal(records.at(-1)!.circuit, 'shed');
    // The core route still gets through: the circuit is closed.
    const core = await send(gw.port, '/core');
    assert.ok(core.status === 200 || core.status === 500);
    assert.equal(up.requests, seen + 1);
    assert.equal(records.at(-1)!.circuit, 'closed');
    const stats = await sendJson<{ circuits: Record<string, Record<string, number>> }>(
      gw.gateway.admin!.port,
      '/stats',
      { headers: { authorization: `Bearer ${TOKEN}` } },
    );
    assert.equal(stats.json.circuits['upstream:up']!.shed, 1);
    assert.equal(stats.json.circuits['upstream:up']!.opened, 0);
  });

  test('a fallback naming an upstream that does not exist is a configuration error at its path', () => {
    try {
      validateConfig(
        gatewayConfig({ up: upstreamOf(['127.0.0.1:1']) }, [
          {
            name: 'r',
            match: { path: '/' },
            upstream: 'up',
            filters: [breaker({ fallback: { upstream: 'nope' } })],
          },
        ]),
      );
      assert.fail('accepted');
    } catch (e) {
      assert.match(
        (e as { problems: string[] }).problems.join('\n'),
        /routes\.0\.filters\.0\.fallback\.upstream: no upstream named "nope"/,
      );
    }
  });

  test('useUpstream: a filter sends requests to another upstream; an unknown name or a late call is a 500, not a crash', async (t) => {
    const one = await switchable('one');
    t.after(() => one.close());
    const two = await switchable('two');
    t.after(() => two.close());
    const gw = await startTestGateway(
      gatewayConfig({ one: upstreamOf([one.address]), two: upstreamOf([two.address]) }, [
        {
          name: 'to-two',
          match: { path: '/two' },
          upstream: 'one',
          filters: [{ name: 'switch-upstream', to: 'two' }],
        },
        {
          name: 'bad',
          match: { path: '/bad' },
          upstream: 'one',
          filters: [{ name: 'switch-upstream', to: 'nope' }],
        },
        {
          name: 'late',
          match: { path: '/late' },
          upstream: 'one',
          filters: [{ name: 'switch-upstream', to: 'two', late: true }],
        },
      ]),
      { plugins: [PLUGIN] },
    );
    t.after(() => gw.stop());
    assert.equal((await send(gw.port, '/two')).text, 'two');
    assert.equal((await send(gw.port, '/bad')).status, 500);
    assert.equal((await send(gw.port, '/late')).status, 500);
    assert.equal((await send(gw.port, '/two')).text, 'two', 'the gateway still serves');
  });
});

describe('retry budget', () => {
  /** Targets that accept and reset at once, counting the connections (the attempts). */
  async function resetting(n: number) {
    let connections = 0;
    const servers: net.Server[] = [];
    const addresses: string[] = [];
    for (let i = 0; i < n; i++) {
      const s = net.createServer((socket) => {
        connections++;
        socket.resetAndDestroy();
      });
      await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
      servers.push(s);
      addresses.push(`127.0.0.1:${(s.address() as net.AddressInfo).port}`);
    }
    return {
      addresses,
      get connections() {
        return connections;
      },
      close: () => Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))),
    };
  }

  for (const budget of [false, { percent: 10, minPerSecond: 0 }] as const) {
    test(`an outage: ${budget === false ? 'without a budget every request is tried 3 times' : 'a 10% budget keeps retries to a tenth of the requests'}`, async (t) => {
      const targets = await resetting(3);
      t.after(() => targets.close());
      records.length = 0;
      const gw = await startTestGateway(
        gatewayConfig(
          {
            up: upstreamOf(targets.addresses, {
              retries: 2,
              retryBudget: budget,
              passive: { consecutiveFailures: 1000 },
            }),
          },
          [{ name: 'api', match: { path: '/' }, upstream: 'up', filters: [{ name: 'record-keeper' }] }],
        ),
        { plugins: [PLUGIN] },
      );
      t.after(() => gw.stop());
      for (let i = 0; i < 50; i++) assert.equal((await send(gw.port, '/')).status, 502);
      const retries = records.reduce((n, r) => n + r.retries, 0);
      if (budget === false) {
        assert.equal(targets.connections, 150);
        assert.equal(retries, 100);
      } else {
        // 10% of the requests in the window: the 50th request's retry sees 49 requests before it.
        assert.ok(retries <= 5 && retries >= 4, `${retries} retries`);
        assert.equal(targets.connections, 50 + retries);
        assert.ok(records.filter((r) => r.retryDenied).length >= 45);
      }
    });
  }

  test('a bad budget is a configuration error at its path', () => {
    try {
      validateConfig(
        gatewayConfig({ up: upstreamOf(['127.0.0.1:1'], { retryBudget: { percent: -1 } }) }, [
          { name: 'r', match: { path: '/' }, upstream: 'up' },
        ]),
      );
      assert.fail('accepted');
    } catch (e) {
      assert.match((e as { problems: string[] }).problems.join('\n'), /upstreams\.up\.retryBudget/);
    }
  });
});
