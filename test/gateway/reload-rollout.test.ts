// Issue 11, items 1-6: reloads are validated for everything a loop would refuse, rolled out in two phases
// (one loop's failure or silence rolls the version back everywhere), keyed by `listener:index` loops, never
// lose an edit made meanwhile, reach loops restarted mid-reload, and keep restart-only sections as they run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, startGateway, validateConfig } from 'netloom/gateway';
import { admin, DelayedSource, FILTERS, type SnapshotView } from './fixtures/test-harness.ts';
import {
  echoHandler,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  type TestUpstream,
  waitUntil,
} from './support.ts';

type Routes = Record<string, unknown>[];

function base(up: TestUpstream, routes: Routes, extra: Record<string, unknown> = {}, loops = 2) {
  return {
    listeners: [{ address: '127.0.0.1:0', loops }],
    admin: { address: '127.0.0.1:0' },
    upstreams: { u: { targets: [{ address: up.address }] } },
    routes: [{ name: 'base', match: { path: '/base' }, upstream: 'u' }, ...routes],
    ...extra,
  };
}

interface ConfigView {
  version: number;
  config: { routes: { name: string }[]; http: { maxBodySize: number }; plugins: string[] };
}

/** Statuses of `n` requests on fresh connections (spread over the loops by the kernel). */
async function statuses(port: number, path: string, n = 16): Promise<number[]> {
  return Promise.all(Array.from({ length: n }, () => send(port, path).then((r) => r.status)));
}

/** Waits for a snapshot of every loop in `ids` taken after `after`, and returns them. */
async function freshSnapshots(
  adminPort: number,
  ids: string[],
  after: number,
  ms = 4000,
): Promise<SnapshotView[]> {
  let loops: (SnapshotView & { at: number })[] = [];
  await waitUntil(
    async () => {
      loops = (await admin<{ loops: (SnapshotView & { at: number })[] }>(adminPort, '/upstreams')).json.loops;
      return ids.every((id) => loops.some((l) => l.loop === id && l.at > after));
    },
    ms,
    `fresh snapshots of loops ${ids.join(', ')}`,
  );
  return loops;
}

test('item 1: a target port of 99999 is refused by validation (path-named); a reload to it with a health check keeps the gateway up', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const bad = {
    listeners: [{ address: '127.0.0.1:0', loops: 1 }],
    upstreams: {
      u: {
        targets: [{ address: '127.0.0.1:99999' }],
        healthCheck: { path: '/health', interval: 20, timeout: 100 },
      },
    },
    routes: [{ name: 'base', match: { path: '/' }, upstream: 'u' }],
  };
  assert.throws(
    () => validateConfig(bad),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.problems.length === 1 &&
      err.problems[0]!.startsWith('upstreams.u.targets.0.address: '),
  );
  const badListener = {
    ...bad,
    listeners: [{ address: '127.0.0.1:70000' }],
    upstreams: { u: { targets: [{ address: up.address }] } },
  };
  assert.throws(
    () => validateConfig(badListener),
    (err: unknown) =>
      err instanceof ConfigError && err.problems.some((p) => p.startsWith('listeners.0.address: ')),
  );

  const good = { ...bad, upstreams: { u: { targets: [{ address: up.address }] } } };
  const gw = await startTestGateway(good);
  t.after(() => gw.stop());
  gw.source.set(bad);
  const result = await gw.gateway.reload();
  assert.equal(result.ok, false);
  assert.equal(result.version, 1);
  assert.ok(
    !result.ok && result.problems.some((p) => p.startsWith('upstreams.u.targets.0.address: ')),
    JSON.stringify(result),
  );
  // Give a loop that took the version time to crash on it.
  await sleep(300);
  assert.equal(gw.gateway.version, 1);
  assert.equal((await send(gw.port, '/x')).status, 200);
});

test('item 1: an admin address a loop would refuse is a ConfigError naming admin.address, not a raw address error', () => {
  const config = (address: string) => ({
    listeners: [{ address: '127.0.0.1:0', loops: 1 }],
    admin: { address },
    upstreams: { u: { targets: [{ address: '127.0.0.1:1' }] } },
    routes: [{ name: 'base', match: { path: '/' }, upstream: 'u' }],
  });
  for (const address of ['127.0.0.1:65536', 'localhost']) {
    let thrown: unknown;
    try {
      validateConfig(config(address));
    } catch (err) {
      thrown = err;
    }
    assert.ok(thrown instanceof ConfigError, `${address}: ${String(thrown)}`);
    assert.ok(
      thrown.problems.some((p) => p.startsWith('admin.address: ')),
      `${address}: ${JSON.stringify(thrown.problems)}`,
    );
  }
});

test('item 2: a loop whose filter create() throws rolls the reload back on every loop; /config keeps the old version', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const gw = await startTestGateway(base(up, []), { plugins: [FILTERS] });
  t.after(() => gw.stop());
  const adminPort = gw.gateway.admin!.port;
  const before = Date.now();
  gw.source.set(
    base(up, [
      {
        name: 'new',
        match: { path: '/new' },
        upstream: 'u',
        filters: [{ name: 'fail-create', loops: ['0:1'] }],
      },
    ]),
  );
  const result = await gw.gateway.reload();
  assert.deepEqual(result, {
    ok: false,
    version: 1,
    problems: ['loop 0:1: deliberate create failure on loop 0:1'],
  });
  const view = await admin<ConfigView>(adminPort, '/config');
  assert.equal(view.json.version, 1);
  assert.deepEqual(
    view.json.config.routes.map((r) => r.name),
    ['base'],
  );
  // Loop 0:0 built the version fine, and must not be running it.
  const loops = await freshSnapshots(adminPort, ['0:0', '0:1'], before);
  assert.deepEqual(
    loops.map((l) => [l.loop, l.version]),
    [
      ['0:0', 1],
      ['0:1', 1],
    ],
  );
  assert.deepEqual(await statuses(gw.port, '/new'), Array(16).fill(404));

  // The next good reload gets a version number never used before, on every loop.
  gw.source.set(base(up, [{ name: 'new', match: { path: '/new' }, upstream: 'u' }]));
  const next = await gw.gateway.reload();
  assert.deepEqual(next, { ok: true, version: 3, changed: true, restartRequired: [] });
  assert.deepEqual(await statuses(gw.port, '/new'), Array(16).fill(200));
});

test('item 2: a loop that does not prepare within reloadTimeout rolls the reload back everywhere', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const gw = await startTestGateway(base(up, []), { plugins: [FILTERS], reloadTimeout: 300 });
  t.after(() => gw.stop());
  const adminPort = gw.gateway.admin!.port;
  gw.source.set(
    base(up, [
      {
        name: 'new',
        match: { path: '/new' },
        upstream: 'u',
        filters: [{ name: 'slow-create', loops: ['0:1'], ms: 1500 }],
      },
    ]),
  );
  const started = Date.now();
  const result = await gw.gateway.reload();
  const took = Date.now() - started;
  assert.deepEqual(result, {
    ok: false,
    version: 1,
    problems: ['loops 0:1 did not prepare version 2 within 300 ms'],
  });
  assert.ok(took >= 250 && took < 1200, `the reload took ${took} ms`);
  assert.equal((await admin<ConfigView>(adminPort, '/config')).json.version, 1);
  // Once loop 0:1 is back, neither loop runs version 2.
  const loops = await freshSnapshots(adminPort, ['0:0', '0:1'], started + 1600);
  assert.deepEqual(
    loops.map((l) => [l.loop, l.version]),
    [
      ['0:0', 1],
      ['0:1', 1],
    ],
  );
  assert.deepEqual(await statuses(gw.port, '/new'), Array(16).fill(404));
});

test('item 3: two listeners with two loops each: a reload completes well under 5 s; /upstreams shows 4 distinct loops', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const config = (routes: Routes) => ({
    ...base(up, routes),
    listeners: [
      { address: '127.0.0.1:0', loops: 2 },
      { address: '127.0.0.1:0', loops: 2 },
    ],
  });
  const gw = await startTestGateway(config([]));
  t.after(() => gw.stop());
  gw.source.set(config([{ name: 'new', match: { path: '/new' }, upstream: 'u' }]));
  const started = Date.now();
  const result = await gw.gateway.reload();
  const took = Date.now() - started;
  assert.ok(took < 1500, `the reload took ${took} ms`);
  const loops = await freshSnapshots(gw.gateway.admin!.port, ['0:0', '0:1', '1:0', '1:1'], started);
  assert.deepEqual(
    loops.map((l) => [l.loop, l.version]),
    [
      ['0:0', 2],
      ['0:1', 2],
      ['1:0', 2],
      ['1:1', 2],
    ],
  );
  assert.deepEqual(result, { ok: true, version: 2, changed: true, restartRequired: [] });
  assert.deepEqual(await statuses(gw.gateway.port(0), '/new'), Array(16).fill(200));
  assert.deepEqual(await statuses(gw.gateway.port(1), '/new'), Array(16).fill(200));
});

test('item 4: an edit made while a reload runs is applied after it, not lost', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const route = (name: string) => ({ name, match: { path: `/${name}` }, upstream: 'u' });
  const source = new DelayedSource(base(up, [], {}, 1), 300);
  const gateway = await startGateway({ source, watch: false });
  t.after(() => gateway.stop());
  source.value = base(up, [route('b')], {}, 1);
  const first = gateway.reload();
  await sleep(50);
  // Two edits while the first reload still reads: the last one must be in force at the end.
  source.value = base(up, [route('c')], {}, 1);
  const second = gateway.reload();
  source.value = base(up, [route('d')], {}, 1);
  const third = gateway.reload();
  const [r1, r2, r3] = await Promise.all([first, second, third]);
  assert.deepEqual(
    gateway.config.routes.map((r) => r.name),
    ['base', 'd'],
  );
  assert.equal(gateway.version, 3);
  assert.deepEqual(r1, { ok: true, version: 2, changed: true, restartRequired: [] });
  assert.deepEqual(r3, { ok: true, version: 3, changed: true, restartRequired: [] });
  assert.deepEqual(r2, r3);
  assert.equal((await send(gateway.port(), '/d')).status, 200);
  assert.equal((await send(gateway.port(), '/b')).status, 404);
});

test('item 5: a loop restarted during a reload ends on the new version', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const gw = await startTestGateway(base(up, []), {
    plugins: [FILTERS],
    handlerModule: new URL('./fixtures/targeted-crash-handler.ts', import.meta.url),
    reloadTimeout: 1500,
  });
  t.after(() => gw.stop());
  const engine = gw.gateway.listeners[0]!;
  const restarted: number[] = [];
  engine.on('loopRestart', (loop: number) => restarted.push(loop));
  gw.source.set(
    base(up, [
      {
        name: 'new',
        match: { path: '/new' },
        upstream: 'u',
        // Loop 0:1 takes 0.8 s to prepare (once): loop 0:0 is crashed and restarted meanwhile.
        filters: [{ name: 'slow-create', loops: ['0:1'], ms: 800, once: 'restart' }],
      },
    ]),
  );
  const started = Date.now();
  const reload = gw.gateway.reload();
  await sleep(100);
  for (let i = 0; i < 40 && !restarted.includes(0); i++) {
    void send(gw.port, '/crash/0').catch(() => undefined);
    await sleep(50);
  }
  const result = await reload;
  const took = Date.now() - started;
  assert.ok(restarted.includes(0), 'loop 0 crashed and came back during the reload');
  assert.deepEqual(result, { ok: true, version: 2, changed: true, restartRequired: [] });
  const loops = await freshSnapshots(gw.gateway.admin!.port, ['0:0', '0:1'], started + took);
  assert.deepEqual(
    loops.map((l) => [l.loop, l.version]),
    [
      ['0:0', 2],
      ['0:1', 2],
    ],
  );
  assert.deepEqual(await statuses(gw.port, '/new'), Array(16).fill(200));
});

test('item 5: a reload during which a loop restarted is not held up for the whole reloadTimeout', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const gw = await startTestGateway(base(up, []), {
    plugins: [FILTERS],
    handlerModule: new URL('./fixtures/targeted-crash-handler.ts', import.meta.url),
    reloadTimeout: 3000,
  });
  t.after(() => gw.stop());
  const engine = gw.gateway.listeners[0]!;
  const restarted: number[] = [];
  engine.on('loopRestart', (loop: number) => restarted.push(loop));
  gw.source.set(
    base(up, [
      {
        name: 'new',
        match: { path: '/new' },
        upstream: 'u',
        filters: [{ name: 'slow-create', loops: ['0:1'], ms: 800, once: 'restart-timing' }],
      },
    ]),
  );
  const started = Date.now();
  const reload = gw.gateway.reload();
  await sleep(100);
  for (let i = 0; i < 40 && !restarted.includes(0); i++) {
    void send(gw.port, '/crash/0').catch(() => undefined);
    await sleep(50);
  }
  const result = await reload;
  const took = Date.now() - started;
  assert.ok(restarted.includes(0), 'loop 0 crashed and came back during the reload');
  assert.equal(result.ok, true);
  // The restarted loop runs the version within a moment of the commit; the reload should say so then,
  // not wait out the 3 s timeout for a 'committed' the restarted loop never sends.
  assert.ok(took < 2500, `the reload took ${took} ms`);
});

test('item 6: http, plugins and listeners changes are reported restartRequired; /config and traffic keep the running values', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const http = (maxBodySize: number) => ({ http: { maxBodySize } });
  const gw = await startTestGateway(base(up, [], http(16), 1));
  t.after(() => gw.stop());
  const adminPort = gw.gateway.admin!.port;

  gw.source.set(base(up, [{ name: 'new', match: { path: '/new' }, upstream: 'u' }], http(1_000_000), 1));
  const result = await gw.gateway.reload();
  const view = await admin<ConfigView>(adminPort, '/config');
  assert.equal(view.json.version, 2);
  assert.equal(view.json.config.http.maxBodySize, 16);
  assert.deepEqual(
    view.json.config.routes.map((r) => r.name),
    ['base', 'new'],
  );
  assert.equal(gw.gateway.config.http.maxBodySize, 16);
  assert.deepEqual(result, { ok: true, version: 2, changed: true, restartRequired: ['http'] });
  assert.equal((await send(gw.port, '/new')).status, 200);
  // The running limit is the old one, as /config says.
  assert.equal((await send(gw.port, '/new', { method: 'POST', body: 'x'.repeat(100) })).status, 413);

  // Only restart-only sections changed: nothing to roll out.
  gw.source.set({
    ...base(up, [{ name: 'new', match: { path: '/new' }, upstream: 'u' }], http(2_000), 1),
    plugins: ['./not-loaded-until-restart.ts'],
    listeners: [{ address: '127.0.0.1:0', loops: 3 }],
  });
  assert.deepEqual(await gw.gateway.reload(), {
    ok: true,
    version: 2,
    changed: false,
    restartRequired: ['listeners', 'http', 'plugins'],
  });
  const after = await admin<ConfigView & { config: { listeners: { loops: number }[] } }>(
    adminPort,
    '/config',
  );
  assert.equal(after.json.config.http.maxBodySize, 16);
  assert.deepEqual(after.json.config.plugins, []);
  assert.equal(after.json.config.listeners[0]!.loops, 1);
});

test('a reload still reading its source when the gateway stops resolves ok: false; it does not reject', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const source = new DelayedSource(base(up, [], {}, 2), 200);
  const gateway = await startGateway({ source, watch: false, reloadTimeout: 500 });
  source.value = base(up, [{ name: 'new', match: { path: '/new' }, upstream: 'u' }], {}, 2);
  const reload = gateway.reload();
  await sleep(20);
  await gateway.stop();
  let outcome: string;
  try {
    const r = await reload;
    outcome = `resolved ok=${r.ok}`;
  } catch (err) {
    outcome = `rejected: ${String(err)}`;
  }
  assert.equal(outcome, 'resolved ok=false');
});

test('a watched change right before stop(): no unhandled rejection once the reload gives up', async (t) => {
  const up = await httpUpstream(echoHandler('u'));
  t.after(() => up.close());
  const seen: string[] = [];
  const onRejection = (err: unknown) => seen.push(String(err));
  process.on('unhandledRejection', onRejection);
  t.after(() => process.off('unhandledRejection', onRejection));
  const gw = await startTestGateway(base(up, [], {}, 2), { watch: true, reloadTimeout: 300 });
  gw.source.set(base(up, [{ name: 'new', match: { path: '/new' }, upstream: 'u' }], {}, 2));
  await gw.stop();
  await sleep(600);
  assert.deepEqual(seen, []);
});
