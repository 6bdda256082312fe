// Hot reload: configuration changes under keep-alive load lose no request and take effect (new routes,
// new targets), on one loop and on two worker loops with the default handler module; the admin endpoint
// reports the version; reloading an unchanged file changes nothing; a watched file reloads on edit.
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { StaticConfigSource, startGateway } from 'netloom/gateway';
import {
  type Echo,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  type RunningGateway,
  send,
  sendJson,
  sleep,
  startTestGateway,
  type TestUpstream,
  upstreamOf,
  waitUntil,
} from './support.ts';

interface ConfigView {
  version: number;
  source: string;
  loadedAt: string;
  config: { routes: { name: string }[]; upstreams: Record<string, { targets: { address: string }[] }> };
}

/** Version `k` of a configuration: the base route, routes added-2..added-k, and a target set that changes. */
function version(k: number, one: TestUpstream, two: TestUpstream, loops = 1): Record<string, unknown> {
  const targetSets = [[one], [two], [one, two], [two], [one], [one, two], [two], [one, two]];
  const targets = targetSets[(k - 1) % targetSets.length]!.map((u) => u.address);
  const routes: Record<string, unknown>[] = [{ name: 'base', match: { path: '/' }, upstream: 'main' }];
  for (let i = 2; i <= k; i++)
    routes.push({
      name: `added-${i}`,
      match: { path: `/added/${i}` },
      upstream: 'main',
      responseHeaders: { add: { 'x-route': `added-${i}` } },
    });
  const config = gatewayConfig(
    { main: upstreamOf(targets, { balance: k % 2 === 0 ? 'round_robin' : 'least_connections' }) },
    routes,
    { admin: { address: '127.0.0.1:0' } },
  );
  return { ...config, listeners: [{ address: '127.0.0.1:0', loops }] };
}

interface Load {
  ok: number;
  failures: string[];
  stop(): Promise<void>;
}

/** `clients` keep-alive clients sending sequential GETs (each on its own connection) until stopped. */
function startLoad(port: number, clients: number): Load {
  let running = true;
  const load: Load = {
    ok: 0,
    failures: [],
    stop: async () => {
      running = false;
      await Promise.all(workers);
    },
  };
  const workers = Array.from({ length: clients }, async (_, c) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; running; i++) {
        try {
          const r = await send(port, `/load/${c}/${i}`, { agent });
          if (r.status === 200 && (JSON.parse(r.text) as Echo).url === `/load/${c}/${i}`) load.ok++;
          else load.failures.push(`${r.status} ${r.text}`);
        } catch (err) {
          load.failures.push(String(err));
        }
      }
    } finally {
      agent.destroy();
    }
  });
  return load;
}

describe('hot reload under keep-alive load', () => {
  test('one loop: 6 reloads (routes added, targets changed) during 2 s of load, zero failures', async (t) => {
    const one = await httpUpstream(echoHandler('one'));
    t.after(() => one.close());
    const two = await httpUpstream(echoHandler('two'));
    t.after(() => two.close());
    const gw = await startTestGateway(version(1, one, two), { watch: true });
    t.after(() => gw.stop());
    const load = startLoad(gw.port, 4);
    const started = Date.now();
    try {
      for (let k = 2; k <= 7; k++) {
        await sleep(250);
        gw.source.set(version(k, one, two)); // the watcher reloads
        await waitUntil(() => gw.gateway.version === k, 2000, `version ${k}`);
        const added = await sendJson<Echo>(gw.port, `/added/${k}/x?k=${k}`);
        assert.equal(added.status, 200, `route added-${k}`);
        assert.equal(added.headers['x-route'], `added-${k}`);
        assert.equal(added.json.url, `/added/${k}/x?k=${k}`);
        // The target set took effect. Requests sent after the reload only reach the version's targets; with
        // two targets, both take load (the counters are read after the reload completed).
        const expected = (
          version(k, one, two) as { upstreams: { main: { targets: { address: string }[] } } }
        ).upstreams.main.targets.map((x): string => (x.address === one.address ? 'one' : 'two'));
        const counts = { one: one.requests, two: two.requests };
        for (let i = 0; i < 4; i++) {
          const who = (await sendJson<Echo>(gw.port, '/who')).json.name;
          assert.ok(expected.includes(who), `version ${k} (${expected}) was served by ${who}`);
        }
        if (expected.length === 2)
          await waitUntil(
            () => one.requests > counts.one && two.requests > counts.two,
            2000,
            `both targets of version ${k} taking load`,
          );
      }
      await sleep(Math.max(0, 2000 - (Date.now() - started)));
    } finally {
      await load.stop();
    }
    assert.deepEqual(load.failures, [], 'no request failed');
    assert.ok(load.ok > 100, `only ${load.ok} requests completed`);
    t.diagnostic(`${load.ok} requests under load`);

    const admin = await sendJson<ConfigView>(gw.gateway.admin!.port, '/config');
    assert.equal(admin.json.version, 7);
    assert.equal(admin.json.source, 'inline configuration');
    assert.deepEqual(
      admin.json.config.routes.map((r) => r.name),
      ['base', 'added-2', 'added-3', 'added-4', 'added-5', 'added-6', 'added-7'],
    );
    const routes = await sendJson<{ name: string }[]>(gw.gateway.admin!.port, '/routes');
    assert.equal(routes.json.length, 7);
    await waitUntil(() => gw.gateway.snapshots()[0]?.version === 7, 2000, 'loop snapshot at version 7');
    // Routes removed by a reload stop answering.
    gw.source.set(version(1, one, two));
    await waitUntil(() => gw.gateway.version === 8, 2000, 'version 8');
    assert.equal((await send(gw.port, '/added/7')).status, 200, 'falls back to the base route');
    assert.equal((await send(gw.port, '/added/7')).headers['x-route'], undefined);
  });

  test('two worker loops with the default handler module: reloads reach both, zero failures', async (t) => {
    const one = await httpUpstream(echoHandler('one'));
    t.after(() => one.close());
    const two = await httpUpstream(echoHandler('two'));
    t.after(() => two.close());
    const gw: RunningGateway = await startTestGateway(version(1, one, two, 2));
    t.after(() => gw.stop());
    assert.equal(gw.gateway.listeners[0]!.loops, 2);
    const load = startLoad(gw.port, 4);
    try {
      for (let k = 2; k <= 5; k++) {
        await sleep(200);
        gw.source.set(version(k, one, two, 2));
        assert.deepEqual(await gw.gateway.reload(), {
          ok: true,
          version: k,
          changed: true,
          restartRequired: [],
        });
        // Fresh connections land on either loop: every one of them knows the new route.
        for (let i = 0; i < 6; i++) {
          const r = await send(gw.port, `/added/${k}`);
          assert.equal(r.status, 200);
          assert.equal(r.headers['x-route'], `added-${k}`);
        }
      }
      await sleep(300);
    } finally {
      await load.stop();
    }
    assert.deepEqual(load.failures, []);
    assert.ok(load.ok > 50, `only ${load.ok} requests completed`);
    await waitUntil(
      () => {
        const s = gw.gateway.snapshots();
        return s.length === 2 && s.every((x) => x.version === 5);
      },
      3000,
      'both loops report version 5',
    );
    assert.equal((await sendJson<ConfigView>(gw.gateway.admin!.port, '/config')).json.version, 5);
  });

  test('POST /reload on the admin endpoint re-reads the source', async (t) => {
    const one = await httpUpstream(echoHandler('one'));
    t.after(() => one.close());
    const gw = await startTestGateway(version(1, one, one));
    t.after(() => gw.stop());
    const admin = gw.gateway.admin!.port;
    assert.deepEqual((await sendJson<unknown>(admin, '/reload', { method: 'POST' })).json, {
      ok: true,
      version: 1,
      changed: false,
      restartRequired: [],
    });
    gw.source.set(version(2, one, one));
    assert.deepEqual((await sendJson<unknown>(admin, '/reload', { method: 'POST' })).json, {
      ok: true,
      version: 2,
      changed: true,
      restartRequired: [],
    });
    assert.equal((await send(gw.port, '/added/2')).headers['x-route'], 'added-2');
  });
});

describe('file sources', () => {
  function yamlConfig(upstream: TestUpstream, extraRoutes = '', comment = ''): string {
    return `# gateway under test${comment}
listeners:
  - address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
upstreams:
  main:
    targets:
      - address: ${upstream.address}
routes:
  - name: base
    match: { path: /base }
    upstream: main
${extraRoutes}`;
  }
  const added = `  - name: added
    match: { path: /added }
    upstream: main
    rewrite: { stripPrefix: /added }
`;

  test('reload() of an unchanged file reports changed: false; edits reload within a second', async (t) => {
    const up = await httpUpstream(echoHandler('up'));
    t.after(() => up.close());
    const dir = await mkdtemp(join(tmpdir(), 'netloom-gw-reload-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'gateway.yaml');
    await writeFile(file, yamlConfig(up));
    const gateway = await startGateway({ source: file });
    t.after(() => gateway.stop(1000));
    const port = gateway.port();

    assert.deepEqual(await gateway.reload(), { ok: true, version: 1, changed: false, restartRequired: [] });
    // A comment-only edit is no change either (the validated configurations are compared).
    await writeFile(file, yamlConfig(up, '', ' (edited)'));
    await sleep(200);
    assert.deepEqual(await gateway.reload(), { ok: true, version: 1, changed: false, restartRequired: [] });
    assert.equal(gateway.version, 1);
    assert.equal((await send(port, '/added/x')).status, 404);

    // An edit in place: the watcher reloads, and the new route answers within a second.
    let start = Date.now();
    await writeFile(file, yamlConfig(up, added));
    await waitUntil(async () => (await send(port, '/added/x')).status === 200, 1000, 'the added route');
    t.diagnostic(`in-place edit applied after ${Date.now() - start} ms`);
    // The loops serve the new configuration a moment before the main thread records their acknowledgements.
    await waitUntil(() => gateway.version === 2, 1000, 'version 2');
    assert.equal((await sendJson<Echo>(port, '/added/x?q')).json.url, '/x?q');
    const view = await sendJson<ConfigView>(gateway.admin!.port, '/config');
    assert.equal(view.json.version, 2);
    assert.equal(view.json.source, `file ${file}`);

    // An editor-style save (write a temporary file, rename it over the original) is seen too.
    start = Date.now();
    await writeFile(
      join(dir, '.gateway.yaml.tmp'),
      yamlConfig(up, added.replace('/added }', '/renamed }').replace('name: added', 'name: renamed')),
    );
    await rename(join(dir, '.gateway.yaml.tmp'), file);
    await waitUntil(async () => (await send(port, '/renamed')).status === 200, 1000, 'the renamed route');
    t.diagnostic(`rename-over save applied after ${Date.now() - start} ms`);
    await waitUntil(() => gateway.version === 3, 1000, 'version 3');

    // An invalid edit is refused: version and routes stay.
    const stderrWrite = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      await writeFile(file, yamlConfig(up).replace('upstream: main', 'upstream: nowhere'));
      await sleep(300);
      const refused = await gateway.reload();
      assert.equal(refused.ok, false);
      assert.ok(!refused.ok && refused.problems.includes('routes.0.upstream: no upstream named "nowhere"'));
    } finally {
      process.stderr.write = stderrWrite;
    }
    assert.equal(gateway.version, 3);
    assert.equal((await send(port, '/renamed')).status, 200);
  });
});

test('a loop restarted after a crash comes back with the latest configuration, not its first one', async () => {
  const up = await httpUpstream(echoHandler('u'));
  const config = (extra: boolean) => ({
    listeners: [{ address: '127.0.0.1:0', loops: 2 }],
    upstreams: { u: { targets: [{ address: up.address }] } },
    routes: [
      { name: 'a', match: { path: '/a' }, upstream: 'u' },
      ...(extra ? [{ name: 'b', match: { path: '/b' }, upstream: 'u' }] : []),
    ],
  });
  const source = new StaticConfigSource(config(false));
  const gw = await startGateway({
    source,
    watch: false,
    handlerModule: new URL('./crashable-handler.ts', import.meta.url),
  });
  try {
    source.set(config(true));
    assert.equal((await gw.reload()).version, 2);
    // Crash every loop once (each connection lands on one of them), then wait for the restarts.
    const restarted = new Set<number>();
    gw.listeners[0]!.on('loopRestart', (loop) => restarted.add(loop));
    for (let i = 0; i < 40 && restarted.size < 2; i++) {
      await send(gw.port(), '/crash').catch(() => undefined);
      await sleep(50);
    }
    assert.equal(restarted.size, 2, 'both loops crashed and came back');
    // Every connection, whichever loop takes it, knows route b (version 2).
    // (While both loops restart at once nothing listens: a refused connection means "not yet".)
    await waitUntil(async () => {
      const replies = await Promise.all(
        Array.from({ length: 8 }, () => send(gw.port(), '/b').catch(() => ({ status: 0 }))),
      );
      return replies.every((r) => r.status === 200);
    }, 5000);
  } finally {
    await gw.stop();
    await up.close();
  }
});
