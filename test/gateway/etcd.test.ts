// A fleet on etcd (issue 17): configuration read from a real etcd (Debian's etcd-server, started here on
// free ports) and watched; changes reach 2 loops of 2 gateway processes within 1 s; an invalid change is
// refused and the running configuration stays; a watch cut off while etcd compacts past it re-reads; etcd
// down keeps the fleet serving, a restart comes up from the cache and catches up; pushes are
// compare-and-swap.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ADMIN_TOKEN,
  type EtcdServer,
  etcdGateway,
  fleetConfig,
  freePort,
  relay,
  startEtcd,
} from './etcd-support.ts';
import { namedUpstream, send, sleep, waitUntil } from './support.ts';

const BIN = fileURLToPath(new URL('../../bin/netloom-gateway.js', import.meta.url));

interface ConfigView {
  version: number;
  revision?: number;
  sourceStatus?: { revision: number; fromCache: boolean; rewatches: number };
}

async function adminJson<T>(port: number, path: string): Promise<{ json: T; revision: string | undefined }> {
  const r = await send(port, path, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  assert.equal(r.status, 200, r.text);
  return {
    json: JSON.parse(r.text) as T,
    revision: r.headers['x-netloom-config-revision'] as string | undefined,
  };
}

/** What `connections` fresh connections get for GET / (each may land on either process). */
async function answers(port: number, connections = 16): Promise<string[]> {
  return Promise.all(
    Array.from({ length: connections }, async () => {
      try {
        return (await send(port, '/')).text;
      } catch {
        return 'error';
      }
    }),
  );
}

function cli(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--conditions=netloom-source', BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d;
    });
    child.once('exit', (code) => resolve({ code, out }));
  });
}

describe('configuration from etcd', () => {
  let etcd: EtcdServer;
  let a: Awaited<ReturnType<typeof namedUpstream>>;
  let b: Awaited<ReturnType<typeof namedUpstream>>;
  before(async () => {
    etcd = await startEtcd();
    a = await namedUpstream('A');
    b = await namedUpstream('B');
  });
  after(async () => {
    await Promise.all([etcd.stop(), a.close(), b.close()]);
  });

  test('a change reaches 2 loops of 2 gateway processes within 1 s; admin answers name the revision', async (t) => {
    const port = await freePort();
    const key = '/fleet1/config';
    const r1 = await etcd.client.put(key, JSON.stringify(fleetConfig(port, a.address)));
    const dir = mkdtempSync(join(tmpdir(), 'netloom-fleet-'));
    const gateways = await Promise.all(
      [1, 2].map((n) =>
        etcdGateway(['--etcd', etcd.endpoint, '--etcd-key', key, '--cache', join(dir, `cache-${n}.json`)]),
      ),
    );
    t.after(() => Promise.all(gateways.map((g) => g.stop())));
    assert.deepEqual(new Set(await answers(port)), new Set(['A']));
    for (const g of gateways) {
      const { json, revision } = await adminJson<ConfigView>(g.admin, '/config');
      assert.equal(json.revision, r1);
      assert.equal(revision, String(r1), 'the admin answer carries the revision');
      assert.equal(json.sourceStatus?.fromCache, false);
    }
    const r2 = await etcd.client.put(key, JSON.stringify(fleetConfig(port, b.address)));
    const changed = performance.now();
    await waitUntil(
      async () => {
        const seen = await answers(port);
        if (!seen.every((x) => x === 'B')) return false;
        for (const g of gateways)
          if ((await adminJson<ConfigView>(g.admin, '/config')).json.revision !== r2) return false;
        return true;
      },
      5000,
      'both processes on the new revision',
    );
    const took = performance.now() - changed;
    assert.ok(took < 1000, `applied in ${Math.round(took)} ms`);
    for (const g of gateways) {
      const { json } = await adminJson<{ loops: { loop: string; revision?: number }[] }>(
        g.admin,
        '/upstreams',
      );
      assert.equal(json.loops.length, 2, 'two loops');
      for (const l of json.loops) assert.equal(l.revision, r2, `loop ${l.loop} serves revision ${r2}`);
      const cache = JSON.parse(readFileSync(join(dir, `cache-${gateways.indexOf(g) + 1}.json`), 'utf8')) as {
        revision: number;
      };
      assert.equal(cache.revision, r2, 'the cache holds the applied revision');
    }

    // An invalid change: refused, logged with its revision; the running configuration stays.
    const bad = structuredClone(fleetConfig(port, b.address)) as { routes: { upstream: string }[] };
    bad.routes[0]!.upstream = 'nope';
    const r3 = await etcd.client.put(key, JSON.stringify(bad));
    await waitUntil(
      () => gateways.every((g) => g.output().includes(`source revision ${r3}`)),
      3000,
      'the refusal logged',
    );
    assert.deepEqual(new Set(await answers(port)), new Set(['B']));
    for (const g of gateways)
      assert.equal((await adminJson<ConfigView>(g.admin, '/config')).json.revision, r2);
    // Not JSON or YAML at all: refused the same way.
    const r4 = await etcd.client.put(key, '{ not: [ valid');
    await waitUntil(
      () => gateways.every((g) => g.output().includes(`revision ${r4}`)),
      3000,
      'the syntax refusal',
    );
    assert.deepEqual(new Set(await answers(port)), new Set(['B']));
  });

  test('a watch cut off while etcd compacts past it re-reads and serves the latest revision', async (t) => {
    const port = await freePort();
    const key = '/fleet2/config';
    await etcd.client.put(key, JSON.stringify(fleetConfig(port, a.address)));
    const cut = await relay(Number(new URL(etcd.endpoint).port));
    t.after(() => cut.close());
    const g = await etcdGateway(['--etcd', cut.endpoint, '--etcd-key', key]);
    t.after(() => g.stop());
    assert.deepEqual(new Set(await answers(port, 4)), new Set(['A']));
    cut.cut();
    // Changes the gateway cannot see, then a compaction past all of them.
    await etcd.client.put(key, JSON.stringify(fleetConfig(port, a.address, { http: { accessLog: false } })));
    const latest = await etcd.client.put(key, JSON.stringify(fleetConfig(port, b.address)));
    await etcd.client.compact(latest);
    await sleep(300);
    assert.deepEqual(new Set(await answers(port, 4)), new Set(['A']), 'still serving while disconnected');
    cut.restore();
    await waitUntil(
      async () => (await answers(port, 4)).every((x) => x === 'B'),
      8000,
      'the latest revision served',
    );
    const { json } = await adminJson<ConfigView>(g.admin, '/config');
    assert.equal(json.revision, latest);
    assert.ok((json.sourceStatus?.rewatches ?? 0) >= 1, 'the watch was started again');
  });

  test('etcd down: the gateway keeps serving; a restart comes up from its cache and catches up', async (t) => {
    const port = await freePort();
    const key = '/fleet3/config';
    const dir = mkdtempSync(join(tmpdir(), 'netloom-fleet-'));
    const cache = join(dir, 'cache.json');
    const r1 = await etcd.client.put(key, JSON.stringify(fleetConfig(port, a.address)));
    const args = ['--etcd', etcd.endpoint, '--etcd-key', key, '--cache', cache];
    let g = await etcdGateway(args);
    t.after(() => g.stop());
    await etcd.kill();
    let restarted = false;
    t.after(() => (restarted ? undefined : etcd.restart()));
    await sleep(300);
    assert.deepEqual(new Set(await answers(port, 4)), new Set(['A']), 'serving with etcd down');
    await g.stop();
    // A start while etcd is down: the cached configuration, said so.
    g = await etcdGateway(args);
    assert.deepEqual(new Set(await answers(port, 4)), new Set(['A']));
    let view = (await adminJson<ConfigView>(g.admin, '/config')).json;
    assert.equal(view.sourceStatus?.fromCache, true);
    assert.equal(view.revision, r1);
    assert.match(g.output(), /serving the cached configuration/);
    // etcd returns, with a change made meanwhile: the gateway catches up.
    await etcd.restart();
    restarted = true;
    const r2 = await etcd.client.put(key, JSON.stringify(fleetConfig(port, b.address)));
    await waitUntil(async () => (await answers(port, 4)).every((x) => x === 'B'), 10_000, 'caught up');
    view = (await adminJson<ConfigView>(g.admin, '/config')).json;
    assert.equal(view.revision, r2);
    assert.equal(view.sourceStatus?.fromCache, false);
    // Without a cache, a start while etcd is down fails plainly.
    await etcd.kill();
    const r = await cli(['--etcd', etcd.endpoint, '--etcd-key', key]);
    await etcd.restart();
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /etcd/);
  });

  test('a prefix that does not end in "/" is refused (it would take its siblings\' keys), by push and by serve', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'netloom-push-'));
    const path = join(dir, 'c.json');
    writeFileSync(path, JSON.stringify(fleetConfig(port, a.address)));
    for (const args of [
      ['config', 'push', path, '--etcd', etcd.endpoint, '--etcd-prefix', '/fleet-noslash'],
      ['--etcd', etcd.endpoint, '--etcd-prefix', '/fleet-noslash'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 1, r.out);
      assert.match(r.out, /an etcd prefix ends in "\/" \(got "\/fleet-noslash"\)/);
    }
    // Nothing was written.
    const put = await fetch(`${etcd.endpoint}/v3/kv/range`, {
      method: 'POST',
      body: JSON.stringify({
        key: Buffer.from('/fleet-noslash').toString('base64'),
        range_end: Buffer.from('/fleet-noslasi').toString('base64'),
      }),
    });
    assert.equal(((await put.json()) as { count?: string }).count ?? '0', '0');
  });

  test('config push: validated, compare-and-swap on the revision; by key and by prefix', async (t) => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'netloom-push-'));
    const file = (name: string, config: unknown) => {
      const path = join(dir, name);
      writeFileSync(path, JSON.stringify(config));
      return path;
    };
    const key = '/fleet4/config';
    const first = await cli([
      'config',
      'push',
      file('a.json', fleetConfig(port, a.address)),
      '--etcd',
      etcd.endpoint,
      '--etcd-key',
      key,
    ]);
    assert.equal(first.code, 0, first.out);
    const seen = Number(/revision (\d+)/.exec(first.out)?.[1]);
    // Two operators who both saw `seen`: the first push wins, the second is refused.
    const second = await cli([
      'config',
      'push',
      file('b.json', fleetConfig(port, b.address)),
      '--etcd',
      etcd.endpoint,
      '--etcd-key',
      key,
      '--expect-revision',
      String(seen),
    ]);
    assert.equal(second.code, 0, second.out);
    const third = await cli([
      'config',
      'push',
      file('c.json', fleetConfig(port, a.address)),
      '--etcd',
      etcd.endpoint,
      '--etcd-key',
      key,
      '--expect-revision',
      String(seen),
    ]);
    assert.equal(third.code, 1, third.out);
    assert.match(third.out, /changed at revision \d+, after revision \d+/);
    const stored = await etcd.client.range(key);
    assert.equal(
      (JSON.parse(stored.kvs[0]!.value) as { upstreams: { app: { targets: { address: string }[] } } })
        .upstreams.app.targets[0]!.address,
      b.address,
    );
    // An invalid file: every problem reported, nothing written.
    const before = (await etcd.client.range(key)).kvs[0]!.modRevision;
    const invalid = await cli([
      'config',
      'push',
      file('bad.json', {
        ...fleetConfig(port, a.address),
        routes: [{ name: 'x', match: { path: '/' }, upstream: 'nope' }],
      }),
      '--etcd',
      etcd.endpoint,
      '--etcd-key',
      key,
    ]);
    assert.equal(invalid.code, 1);
    assert.match(invalid.out, /no upstream named "nope"/);
    assert.equal((await etcd.client.range(key)).kvs[0]!.modRevision, before);

    // By prefix: routes in order, upstreams by name, the rest in base; a gateway serves it.
    const prefix = '/fleet5/';
    const config = fleetConfig(port, a.address, {
      upstreams: { app: { targets: [{ address: a.address }] }, other: { targets: [{ address: b.address }] } },
      routes: [
        { name: 'other', match: { path: '/other' }, upstream: 'other' },
        { name: 'all', match: { path: '/' }, upstream: 'app' },
      ],
    });
    const pushed = await cli([
      'config',
      'push',
      file('p.json', config),
      '--etcd',
      etcd.endpoint,
      '--etcd-prefix',
      prefix,
    ]);
    assert.equal(pushed.code, 0, pushed.out);
    const keys = (await etcd.client.range(prefix, true)).kvs.map((kv) => kv.key);
    assert.deepEqual(keys, [
      `${prefix}base`,
      `${prefix}pushed`,
      `${prefix}routes/0000-other`,
      `${prefix}routes/0001-all`,
      `${prefix}upstreams/app`,
      `${prefix}upstreams/other`,
    ]);
    const g = await etcdGateway(['--etcd', etcd.endpoint, '--etcd-prefix', prefix]);
    t.after(() => g.stop());
    assert.equal((await send(port, '/other/x')).text, 'B');
    assert.equal((await send(port, '/x')).text, 'A');
    // A route edited in place under the prefix applies like any change.
    await etcd.client.put(
      `${prefix}routes/0000-other`,
      JSON.stringify({ name: 'other', match: { path: '/other' }, upstream: 'app' }),
    );
    await waitUntil(async () => (await send(port, '/other/x')).text === 'A', 3000, 'the edited route');
  });
});
