// Target health: active checks flip a target after unhealthyThreshold failures and back after
// healthyThreshold successes, traffic avoids unhealthy and ejected targets, passive ejection after
// consecutive failures with re-admission after ejectTime, and the admin endpoint shows both.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import {
  deadAddress,
  type Echo,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  type RunningGateway,
  send,
  sendJson,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

interface TargetView {
  target: string;
  healthy: boolean;
  ejected: boolean;
  active: number;
  requests: number;
  pool: { address: string; open: number; idle: number; created: number; reused: number; failed: number };
}
interface UpstreamsView {
  version: number;
  loops: { loop: number; version: number; at: number; upstreams: Record<string, TargetView[]> }[];
}

async function adminTarget(
  gw: RunningGateway,
  upstream: string,
  address: string,
): Promise<TargetView | undefined> {
  const r = await sendJson<UpstreamsView>(gw.gateway.admin!.port, '/upstreams');
  assert.equal(r.status, 200);
  return r.json.loops[0]?.upstreams[upstream]?.find((t) => t.target === address);
}

/** Sends `n` sequential GETs and returns who answered each (the echo name, or the status). */
async function probe(port: number, n: number, method = 'GET'): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await send(port, `/work/${i}`, { method });
    out.push(r.status === 200 ? (JSON.parse(r.text) as Echo).name : String(r.status));
  }
  return out;
}

describe('active health checks', () => {
  test('unhealthy after unhealthyThreshold failures, healthy after healthyThreshold successes; traffic follows', async (t) => {
    let bHealthy = true;
    const checks = { ok: 0, fail: 0 };
    const a = await httpUpstream((req, res) =>
      req.url === '/health' ? res.end('ok') : echoHandler('A')(req, res),
    );
    t.after(() => a.close());
    const b = await httpUpstream((req, res) => {
      if (req.url !== '/health') return echoHandler('B')(req, res);
      if (bHealthy) {
        checks.ok++;
        res.end('ok');
      } else {
        checks.fail++;
        res.writeHead(503).end('down');
      }
    });
    t.after(() => b.close());
    const gw = await startTestGateway(
      gatewayConfig(
        {
          pair: upstreamOf([a.address, b.address], {
            healthCheck: {
              path: '/health',
              interval: 100,
              timeout: 500,
              healthyThreshold: 2,
              unhealthyThreshold: 3,
            },
          }),
        },
        [{ name: 'pair', match: { path: '/' }, upstream: 'pair' }],
        { admin: { address: '127.0.0.1:0' } },
      ),
    );
    t.after(() => gw.stop());
    await waitUntil(() => checks.ok >= 1, 2000, 'a first check of B');
    assert.deepEqual(new Set(await probe(gw.port, 4)), new Set(['A', 'B']));

    // Each check answers, the gateway takes it in within a millisecond, and the next check is 100 ms away:
    // probing 20 ms after each answer sees the state that answer left.
    bHealthy = false;
    for (let k = 1; k <= 3; k++) {
      await waitUntil(() => checks.fail >= k, 2000, `failed check ${k}`);
      await sleep(20);
      const who = await probe(gw.port, 4);
      if (k < 3) assert.ok(who.includes('B'), `after ${k} failed checks B still gets traffic: ${who}`);
      else assert.deepEqual(who, ['A', 'A', 'A', 'A'], `after ${k} failed checks B gets none`);
    }
    assert.deepEqual(new Set(await probe(gw.port, 10)), new Set(['A']));
    await waitUntil(
      async () => (await adminTarget(gw, 'pair', b.address))?.healthy === false,
      3000,
      'admin: B unhealthy',
    );
    assert.equal((await adminTarget(gw, 'pair', a.address))?.healthy, true);

    const okBefore = checks.ok;
    bHealthy = true;
    for (let k = 1; k <= 2; k++) {
      await waitUntil(() => checks.ok >= okBefore + k, 2000, `passed check ${k}`);
      await sleep(20);
      const who = await probe(gw.port, 4);
      if (k < 2) assert.ok(!who.includes('B'), `after ${k} passed check B is still out: ${who}`);
      else assert.deepEqual(new Set(who), new Set(['A', 'B']), `after ${k} passed checks B is back`);
    }
    await waitUntil(
      async () => (await adminTarget(gw, 'pair', b.address))?.healthy === true,
      3000,
      'admin: B healthy',
    );
  });

  test('a failure run broken by a success does not flip the target', async (t) => {
    // Scripted check answers for B: fail, fail, ok, fail, fail, ok, ... (never three failures in a row).
    let n = 0;
    const a = await httpUpstream((req, res) =>
      req.url === '/health' ? res.end('ok') : echoHandler('A')(req, res),
    );
    t.after(() => a.close());
    const b = await httpUpstream((req, res) => {
      if (req.url !== '/health') return echoHandler('B')(req, res);
      n++;
      if (n % 3 === 0) res.end('ok');
      else res.writeHead(500).end('no');
    });
    t.after(() => b.close());
    const gw = await startTestGateway(
      gatewayConfig(
        {
          pair: upstreamOf([a.address, b.address], {
            // A flip would be for good: 100 passes in a row are needed to come back.
            healthCheck: {
              path: '/health',
              interval: 30,
              timeout: 500,
              healthyThreshold: 100,
              unhealthyThreshold: 3,
            },
          }),
        },
        [{ name: 'pair', match: { path: '/' }, upstream: 'pair' }],
      ),
    );
    t.after(() => gw.stop());
    const seenB: boolean[] = [];
    while (n < 12) {
      seenB.push((await probe(gw.port, 2)).includes('B'));
      await sleep(10);
    }
    assert.ok(seenB.every(Boolean), 'B kept its traffic throughout');
    assert.ok((await probe(gw.port, 2)).includes('B'), 'and still has it after 12 checks');
  });

  test('a dead target is found by the checks, so even non-retryable requests avoid it', async (t) => {
    const a = await httpUpstream((req, res) =>
      req.url === '/health' ? res.end('ok') : echoHandler('A')(req, res),
    );
    t.after(() => a.close());
    const dead = await deadAddress();
    const gw = await startTestGateway(
      gatewayConfig(
        {
          pair: upstreamOf([dead, a.address], {
            healthCheck: {
              path: '/health',
              interval: 50,
              timeout: 200,
              healthyThreshold: 1,
              unhealthyThreshold: 2,
            },
          }),
        },
        [{ name: 'pair', match: { path: '/' }, upstream: 'pair' }],
        { admin: { address: '127.0.0.1:0' } },
      ),
    );
    t.after(() => gw.stop());
    // The first check runs at start, the second 50 ms later.
    await sleep(250);
    assert.deepEqual(await probe(gw.port, 10, 'POST'), Array(10).fill('A'));
    await waitUntil(
      async () => (await adminTarget(gw, 'pair', dead))?.healthy === false,
      3000,
      'admin: dead target unhealthy',
    );
  });

  test('all targets unhealthy: 503 no healthy upstream', async (t) => {
    const sick = await httpUpstream((req, res) =>
      req.url === '/health' ? res.writeHead(500).end() : echoHandler('S')(req, res),
    );
    t.after(() => sick.close());
    const gw = await startTestGateway(
      gatewayConfig(
        {
          only: upstreamOf([sick.address], {
            healthCheck: { path: '/health', interval: 50, timeout: 200, unhealthyThreshold: 1 },
            panicThreshold: 0,
          }),
        },
        [{ name: 'only', match: { path: '/' }, upstream: 'only' }],
      ),
    );
    t.after(() => gw.stop());
    await waitUntil(async () => (await send(gw.port, '/x')).status === 503, 2000, '503');
    const r = await sendJson<{ error: string }>(gw.port, '/y');
    assert.equal(r.status, 503);
    assert.equal(r.json.error, 'no healthy upstream');
  });

  test('panic threshold: with most targets unhealthy, all of them take traffic again', async (t) => {
    // A check that fails for every target (a broken /health, a network blip for the checker) must not turn
    // into a full outage: below panicThreshold percent usable, health is ignored.
    const sick = await Promise.all(
      ['S1', 'S2', 'S3'].map((name) =>
        httpUpstream((req, res) =>
          req.url === '/health' ? res.writeHead(500).end() : echoHandler(name)(req, res),
        ),
      ),
    );
    const well = await httpUpstream(echoHandler('W'));
    t.after(() => Promise.all([...sick, well].map((u) => u.close())));
    const gw = await startTestGateway(
      gatewayConfig(
        {
          four: upstreamOf([...sick.map((u) => u.address), well.address], {
            healthCheck: { path: '/health', interval: 50, timeout: 200, unhealthyThreshold: 1 },
            retries: 0,
          }),
        },
        [{ name: 'four', match: { path: '/' }, upstream: 'four' }],
        { admin: { address: '127.0.0.1:0' } },
      ),
    );
    t.after(() => gw.stop());
    for (const u of sick)
      await waitUntil(
        async () => (await adminTarget(gw, 'four', u.address))?.healthy === false,
        2000,
        'S unhealthy',
      );
    // 1 of 4 usable (25%) is below the default 50%: every target takes requests.
    const seen = new Set(await probe(gw.port, 12));
    assert.deepEqual(seen, new Set(['S1', 'S2', 'S3', 'W']));
  });
});

describe('passive ejection', () => {
  test('ejected after consecutive failures, re-admitted after ejectTime; admin shows it', async (t) => {
    let bFails = true;
    const a = await httpUpstream(echoHandler('A'));
    t.after(() => a.close());
    const b = await httpUpstream((req, res) => {
      if (bFails) res.writeHead(502).end('bad');
      else echoHandler('B')(req, res);
    });
    t.after(() => b.close());
    const EJECT = 2500;
    const gw = await startTestGateway(
      gatewayConfig(
        {
          pair: upstreamOf([a.address, b.address], {
            retries: 0,
            passive: { consecutiveFailures: 3, ejectTime: EJECT, statuses: [502] },
          }),
        },
        [{ name: 'pair', match: { path: '/' }, upstream: 'pair' }],
        { admin: { address: '127.0.0.1:0' } },
      ),
    );
    t.after(() => gw.stop());
    // Round robin: A, B, A, B, A, B -- the third failure at B ejects it.
    assert.deepEqual(await probe(gw.port, 6), ['A', '502', 'A', '502', 'A', '502']);
    const ejectedAt = Date.now();
    assert.deepEqual(await probe(gw.port, 8), Array(8).fill('A'));
    assert.equal(b.requests, 3);
    await waitUntil(
      async () => (await adminTarget(gw, 'pair', b.address))?.ejected === true,
      2000,
      'admin: B ejected',
    );
    const view = await adminTarget(gw, 'pair', b.address);
    assert.equal(view?.healthy, true, 'ejection is not the active health flag');

    bFails = false;
    await sleep(ejectedAt + EJECT + 50 - Date.now());
    assert.deepEqual(new Set(await probe(gw.port, 4)), new Set(['A', 'B']), 'B is back after ejectTime');
    await waitUntil(
      async () => (await adminTarget(gw, 'pair', b.address))?.ejected === false,
      2000,
      'admin: B back',
    );
  });

  test('a success resets the failure run (failures must be consecutive)', async (t) => {
    let n = 0;
    const a = await httpUpstream(echoHandler('A'));
    t.after(() => a.close());
    const b = await httpUpstream((req, res) => {
      n++;
      if (n % 3 === 0) echoHandler('B')(req, res);
      else res.writeHead(500).end('no');
    });
    t.after(() => b.close());
    const gw = await startTestGateway(
      gatewayConfig(
        {
          pair: upstreamOf([a.address, b.address], {
            retries: 0,
            passive: { consecutiveFailures: 3, ejectTime: 10_000, statuses: [500] },
          }),
        },
        [{ name: 'pair', match: { path: '/' }, upstream: 'pair' }],
      ),
    );
    t.after(() => gw.stop());
    await probe(gw.port, 24);
    assert.equal(b.requests, 12, 'B was never ejected');
  });

  test('connection failures count: a dead target is ejected, then skipped', async (t) => {
    const a = await httpUpstream(echoHandler('A'));
    t.after(() => a.close());
    const dead = await deadAddress();
    const gw = await startTestGateway(
      gatewayConfig(
        {
          pair: upstreamOf([dead, a.address], {
            retries: 0,
            passive: { consecutiveFailures: 2, ejectTime: 10_000 },
          }),
        },
        [{ name: 'pair', match: { path: '/' }, upstream: 'pair' }],
      ),
    );
    t.after(() => gw.stop());
    assert.deepEqual(await probe(gw.port, 4), ['502', 'A', '502', 'A']);
    assert.deepEqual(await probe(gw.port, 6), Array(6).fill('A'));
  });

  // Regression (found by the test helper): ProxyCall.downstreamGone aborts the upstream exchange, and the abort comes back through
  // ProxyCall.onError -> failAttempt(..., countsAgainstTarget = true) -> Upstream.failed(target). So clients
  // that hang up mid-response (a cancelled download, a closed tab) count as failures of a healthy target:
  // consecutiveFailures of them eject it, and with one target every client then gets 503 for ejectTime.
  test('clients hanging up mid-response do not eject a healthy target', async (t) => {
    const up = await httpUpstream((req, res) => {
      if (req.url === '/quick') return void res.end('quick');
      res.writeHead(200);
      const timer = setInterval(() => res.write('x'), 20);
      res.on('close', () => clearInterval(timer));
    });
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig(
        { one: upstreamOf([up.address], { passive: { consecutiveFailures: 2, ejectTime: 10_000 } }) },
        [{ name: 'one', match: { path: '/' }, upstream: 'one' }],
      ),
    );
    t.after(() => gw.stop());
    for (let i = 0; i < 2; i++) {
      const c = net.connect(gw.port, '127.0.0.1');
      c.write('GET /stream HTTP/1.1\r\nHost: h\r\n\r\n');
      await new Promise((resolve) => c.once('data', resolve));
      c.resetAndDestroy();
      await sleep(50);
    }
    const r = await send(gw.port, '/quick');
    assert.equal(r.status, 200, `after two client hang-ups: ${r.status} ${r.text}`);
  });
});
