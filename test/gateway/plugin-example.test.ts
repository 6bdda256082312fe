// examples/gateway-plugin: a filter written against netloom/gateway alone, run in a gateway with two loops
// (each loop imports the plugin on its own thread), its settings validated with the configuration, its
// refusals counted in memory every loop shares.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, startGateway } from 'netloom/gateway';
import {
  type Echo,
  echoed,
  echoHandler,
  httpUpstream,
  sendJson,
  type TestUpstream,
  waitUntil,
} from './support.ts';

const PLUGIN = new URL('../../examples/gateway-plugin/api-key.ts', import.meta.url);
const KEY = 'k-0123456789abcdef';

function config(upstream: string, keys: unknown = [KEY], extra: Record<string, unknown> = {}) {
  return {
    listeners: [{ address: '127.0.0.1:0', loops: 2 }],
    upstreams: { app: { targets: [{ address: upstream }] } },
    routes: [
      {
        name: 'private',
        match: { path: '/private' },
        upstream: 'app',
        filters: [{ name: 'api-key', keys, ...extra }],
      },
      { name: 'public', match: { path: '/' }, upstream: 'app' },
    ],
  };
}

function writeConfig(value: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'netloom-plugin-')), 'gateway.json');
  writeFileSync(file, JSON.stringify(value));
  return file;
}

/** A GET on its own connection from its own source port: the kernel spreads such connections over loops. */
function get(port: number, path: string, headers: Record<string, string> = {}) {
  return sendJson<Echo & { error?: string }>(port, path, { headers });
}

describe('the api-key example filter', () => {
  let up: TestUpstream;
  before(async () => {
    up = await httpUpstream(echoHandler('app'));
  });
  after(() => up.close());

  test('refuses without a key, passes with one (the key never reaches the upstream), on two loops', async (t) => {
    const gw = await startGateway({
      source: writeConfig(config(up.address)),
      plugins: [PLUGIN],
      watch: false,
    });
    t.after(() => gw.stop(1000));
    assert.equal(gw.listeners[0]!.loops, 2);
    const missing = await get(gw.port(), '/private/x');
    assert.equal(missing.status, 401);
    assert.deepEqual(missing.json, { error: 'missing x-api-key' });
    assert.equal(missing.headers['www-authenticate'], 'ApiKey realm="api"');
    const wrong = await get(gw.port(), '/private/x', { 'x-api-key': 'k-0123456789abcdeX' });
    assert.equal(wrong.status, 401);
    assert.deepEqual(wrong.json, { error: 'unknown x-api-key' });
    // More refusals over separate connections: they land on both loops, and one shared counter sees them all.
    for (let i = 0; i < 6; i++) assert.equal((await get(gw.port(), '/private/y')).status, 401);
    assert.equal(up.requests, 0, 'a refused request reached the upstream');
    const ok = await get(gw.port(), '/private/x', { 'x-api-key': KEY });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.url, '/private/x');
    assert.equal(echoed(ok.json, 'x-api-key'), undefined, 'the credential went upstream');
    assert.equal(echoed(ok.json, 'x-api-key-refusals'), '8', 'refusals counted across both loops');
    assert.equal((await get(gw.port(), '/public')).status, 200, 'other routes need no key');
  });

  test('both loops run the filter: requests spread by the kernel over the loops all meet it', async (t) => {
    const gw = await startGateway({
      source: writeConfig(config(up.address)),
      plugins: [PLUGIN],
      watch: false,
    });
    t.after(() => gw.stop(1000));
    const before = up.requests;
    for (let i = 0; i < 24; i++) {
      // A new connection each time (a new source port): SO_REUSEPORT hashes it to one of the loops.
      assert.equal((await get(gw.port(), '/private/z')).status, 401);
      assert.equal((await get(gw.port(), '/private/z', { 'x-api-key': KEY })).status, 200);
    }
    assert.equal(up.requests - before, 24);
    // Each loop's snapshot counts the requests it proxied: both served some, and both refused without a key.
    await waitUntil(
      () => {
        const perLoop = gw.snapshots().map((s) => s.upstreams.app![0]!.requests);
        return perLoop.length === 2 && perLoop.every((n) => n > 0);
      },
      3000,
      'both loops proxying',
    );
    assert.deepEqual(
      gw.snapshots().map((s) => s.loop),
      ['0:0', '0:1'],
    );
  });

  test('bad settings are configuration errors at start, named by their path', async () => {
    await assert.rejects(
      startGateway({ source: writeConfig(config(up.address, ['short'])), plugins: [PLUGIN], watch: false }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.problems, ['routes.0.filters.0.keys.0: an API key has at least 16 characters']);
        return true;
      },
    );
    await assert.rejects(
      startGateway({
        source: writeConfig(config(up.address, [KEY], { header: 'x api key', extra: 1 })),
        plugins: [PLUGIN],
        watch: false,
      }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 2, err.problems.join('\n'));
        assert.ok(err.problems.some((p) => p.startsWith('routes.0.filters.0.header: a header name')));
        assert.ok(err.problems.some((p) => p.startsWith('routes.0.filters.0: ') && p.includes('extra')));
        return true;
      },
    );
  });

  test('without the plugin, the filter name is unknown: a configuration error listing the known ones', async () => {
    await assert.rejects(
      startGateway({ source: writeConfig(config(up.address)), watch: false }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.problems, [
          'routes.0.filters.0.name: no filter named "api-key" (known: circuit-breaker, fault, rate-limit, respond)',
        ]);
        return true;
      },
    );
  });

  test('a plugin named in the configuration and in the options is loaded once', async (t) => {
    const gw = await startGateway({
      source: writeConfig({ ...config(up.address), plugins: [PLUGIN.href] }),
      plugins: [PLUGIN],
      watch: false,
    });
    t.after(() => gw.stop(1000));
    assert.equal((await get(gw.port(), '/private/x', { 'x-api-key': KEY })).status, 200);
  });

  test('two plugins defining the same filter name are a configuration error naming both', async () => {
    const copy = new URL('./fixtures/duplicate-api-key.ts', import.meta.url);
    await assert.rejects(
      startGateway({ source: writeConfig(config(up.address)), plugins: [PLUGIN, copy], watch: false }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 1);
        assert.match(
          err.problems[0]!,
          /^plugins: filter "api-key" is defined by both .*api-key\.ts and .*duplicate-api-key\.ts$/,
        );
        return true;
      },
    );
  });

  test('a reload with bad settings is refused and the running version keeps its key', async (t) => {
    const file = writeConfig(config(up.address));
    const gw = await startGateway({ source: file, plugins: [PLUGIN], watch: false });
    t.after(() => gw.stop(1000));
    writeFileSync(file, JSON.stringify(config(up.address, [])));
    const r = await gw.reload();
    assert.equal(r.ok, false);
    assert.ok(!r.ok && r.problems.some((p) => p.startsWith('routes.0.filters.0.keys')), JSON.stringify(r));
    assert.equal((await get(gw.port(), '/private/x', { 'x-api-key': KEY })).status, 200);
    const other = 'k-fedcba9876543210';
    writeFileSync(file, JSON.stringify(config(up.address, [other])));
    assert.equal((await gw.reload()).ok, true);
    assert.equal((await get(gw.port(), '/private/x', { 'x-api-key': KEY })).status, 401);
    assert.equal((await get(gw.port(), '/private/x', { 'x-api-key': other })).status, 200);
  });
});
