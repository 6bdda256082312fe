// Configuration: every invalid configuration is refused with each problem named by its exact path, valid
// YAML and JSON files load to the same configuration, and a running gateway refuses an invalid reload while
// it keeps serving the configuration it has.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  ConfigError,
  configSchema,
  loadConfigFile,
  parseConfigText,
  startGateway,
  validateConfig,
} from 'netloom/gateway';
import {
  type Echo,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  sendJson,
  startTestGateway,
  type TestUpstream,
  upstreamOf,
} from './support.ts';

type Json = Record<string, unknown>;
interface Mutable {
  listeners: Json[];
  upstreams: Record<string, Json & { targets: Json[] }>;
  routes: (Json & { match: Json })[];
  [key: string]: unknown;
}

function base(): Mutable {
  return {
    listeners: [{ address: '127.0.0.1:0' }],
    upstreams: { users: { targets: [{ address: '127.0.0.1:9101' }] } },
    routes: [{ name: 'users', match: { path: '/users' }, upstream: 'users' }],
  };
}

/** The problems `validateConfig` reports for `config` (fails when it is valid). */
function problems(config: unknown): readonly string[] {
  try {
    validateConfig(config, 'test.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `not a ConfigError: ${String(err)}`);
    assert.match(err.message, /^invalid gateway configuration in test\.yaml:\n {2}/);
    for (const p of err.problems) assert.ok(err.message.includes(p), 'the message lists every problem');
    return err.problems;
  }
  assert.fail('the configuration was accepted');
}

function mutate(f: (c: Mutable) => void): Mutable {
  const c = base();
  f(c);
  return c;
}

describe('invalid configurations name each problem by path', () => {
  test('the base configuration is valid, with defaults applied', () => {
    const c = validateConfig(base());
    assert.equal(c.listeners[0]!.loops, 1);
    assert.equal(c.upstreams.users!.balance, 'round_robin');
    assert.equal(c.upstreams.users!.retries, 1);
    assert.equal(c.upstreams.users!.targets[0]!.weight, 1);
    assert.deepEqual(c.upstreams.users!.pool, {
      maxConnections: 256,
      maxIdle: 256,
      idleTimeout: 4_000, // below node:http's 5 s keep-alive: the gateway closes first
      connectTimeout: 2_000,
      queueTimeout: 5_000,
      maxQueue: 1024,
    });
    assert.equal(c.routes[0]!.match.pathType, 'prefix');
    assert.equal(c.routes[0]!.domain, 'default');
    assert.equal(c.routes[0]!.preserveHost, true);
  });

  test('a route naming an unknown upstream', () => {
    const c = mutate((c) => c.routes.push({ name: 'videos', match: { path: '/v' }, upstream: 'video' }));
    assert.deepEqual(problems(c), ['routes.1.upstream: no upstream named "video"']);
  });

  test('a bad target address and a bad listener address', () => {
    const c = mutate((c) => {
      c.upstreams.users!.targets.push({ address: 'localhost' });
      c.listeners[0]!.address = 'http://127.0.0.1:80';
    });
    assert.deepEqual(problems(c), [
      'listeners.0.address: not an address (host:port)',
      'upstreams.users.targets.1.address: not an address (host:port)',
    ]);
    for (const ok of [
      '127.0.0.1:1',
      'tcp://h.example:80',
      'tcp6://[::1]:8080',
      '[::1]:1',
      'unix:///tmp/x.sock',
    ])
      assert.doesNotThrow(() => validateConfig(mutate((c) => (c.upstreams.users!.targets[0]!.address = ok))));
  });

  test('a bad header name in requestHeaders.add is refused at its path', () => {
    const c = mutate((c) => (c.routes[0]!.requestHeaders = { add: { 'bad header': 'v' } }));
    const p = problems(c);
    assert.equal(p.length, 1);
    assert.ok(p[0]!.startsWith('routes.0.requestHeaders.add.bad header: '), p[0]);
  });

  // Regression (found by the test helper): the header-name schema says "not a valid header name", and it does for `remove` lists,
  // but a bad name as a key of `add` (a record key) reports zod's generic "Invalid key in record".
  test('a bad header name in requestHeaders.add says it is not a valid header name', () => {
    const c = mutate((c) => (c.routes[0]!.requestHeaders = { add: { 'bad header': 'v' } }));
    assert.deepEqual(problems(c), ['routes.0.requestHeaders.add.bad header: not a valid header name']);
  });

  test('bad header values and names elsewhere in header rules', () => {
    const c = mutate((c) => {
      c.routes[0]!.requestHeaders = { add: { 'x-ok': 'line\nbreak' } };
      c.routes[0]!.responseHeaders = { remove: ['x-fine', 'x:colon'] };
    });
    assert.deepEqual(problems(c), [
      'routes.0.requestHeaders.add.x-ok: invalid character in a header value',
      'routes.0.responseHeaders.remove.1: not a valid header name',
    ]);
  });

  test('a route cannot add a field the proxy frames or writes itself (a second one would reach the upstream)', () => {
    const c = mutate((c) => {
      c.routes[0]!.requestHeaders = {
        add: { 'Content-Length': '0', host: 'evil.example', 'X-Forwarded-For': '10.0.0.1', traceparent: 'x' },
      };
      c.routes[0]!.responseHeaders = { add: { 'transfer-encoding': 'chunked', 'x-request-id': 'fixed' } };
    });
    assert.deepEqual(problems(c), [
      'routes.0.requestHeaders.add.Content-Length: a hop-by-hop or framing field the proxy writes itself',
      'routes.0.requestHeaders.add.host: the proxy writes Host (see preserveHost)',
      'routes.0.requestHeaders.add.X-Forwarded-For: added by the proxy (proxyHeaders.forwarded); turn that off to set your own',
      'routes.0.requestHeaders.add.traceparent: added by the proxy (proxyHeaders.traceparent); turn that off to set your own',
      'routes.0.responseHeaders.add.transfer-encoding: a hop-by-hop or framing field the proxy writes itself',
      'routes.0.responseHeaders.add.x-request-id: echoed by the proxy (proxyHeaders.requestId); turn that off to set your own',
    ]);
    // With the proxy's own fields turned off, the route may set them.
    const own = mutate((c) => {
      c.routes[0]!.requestHeaders = {
        add: { 'X-Forwarded-For': '10.0.0.1', traceparent: 'x', 'x-request-id': 'r' },
      };
      c.routes[0]!.responseHeaders = { add: { 'x-request-id': 'fixed' } };
      c.routes[0]!.proxyHeaders = { forwarded: false, requestId: false, traceparent: false };
    });
    assert.doesNotThrow(() => validateConfig(own, 'test.yaml'));
  });

  test('consistent_hash without hashOn', () => {
    const c = mutate((c) => (c.upstreams.users!.balance = 'consistent_hash'));
    assert.deepEqual(problems(c), [
      'upstreams.users.hashOn: consistent_hash needs hashOn (header, cookie or clientIp)',
    ]);
    for (const hashOn of [{ header: 'x-user' }, { cookie: 'sid' }, { clientIp: true }])
      assert.doesNotThrow(() =>
        validateConfig(
          mutate((c) => Object.assign(c.upstreams.users!, { balance: 'consistent_hash', hashOn })),
        ),
      );
  });

  test('duplicate route names', () => {
    const c = mutate((c) => {
      c.routes.push({ name: 'other', match: { path: '/o' }, upstream: 'users' });
      c.routes.push({ name: 'users', match: { path: '/u2' }, upstream: 'users' });
    });
    assert.deepEqual(problems(c), ['routes.2.name: duplicate route name "users"']);
  });

  test('unknown keys, at the root and nested', () => {
    assert.deepEqual(problems(mutate((c) => (c.listners = []))), ['(root): Unrecognized key: "listners"']);
    const c = mutate((c) => {
      c.upstreams.users!.pool = { maxConn: 1 };
      c.routes[0]!.match.methd = ['GET'];
    });
    assert.deepEqual(problems(c), [
      'upstreams.users.pool: Unrecognized key: "maxConn"',
      'routes.0.match: Unrecognized key: "methd"',
    ]);
  });

  test('paths, methods, hosts and numbers', () => {
    const c = mutate((c) => {
      c.routes[0]!.match = { path: 'users', methods: ['get'], host: 'bad host' };
      c.routes.push({ name: 'p', match: { path: '/a/:9x' }, upstream: 'users' });
      c.upstreams.users!.retries = 9;
      c.upstreams.users!.targets[0]!.weight = 0;
    });
    assert.deepEqual(problems(c), [
      'upstreams.users.targets.0.weight: Too small: expected number to be >=1',
      'upstreams.users.retries: Too big: expected number to be <=5',
      'routes.0.match.host: a host is name, *.suffix or *',
      'routes.0.match.path: a path starts with /',
      'routes.0.match.methods.0: methods are upper-case tokens',
      'routes.1.match.path: a parameter segment is :name',
    ]);
  });

  test("a rewrite with its own query or fragment is refused (the client's query is appended to it)", () => {
    const c = mutate((c) => {
      (c.routes[0] as Record<string, unknown>).rewrite = { replace: '/v2?x=1' };
      c.routes.push({
        name: 'b',
        match: { path: '/b' },
        upstream: 'users',
        rewrite: { replacePrefix: { from: '/b', to: '/c#f' } },
      } as never);
    });
    assert.deepEqual(problems(c), [
      "routes.0.rewrite.replace: a rewritten path has no '?' or '#' (the client's query is kept)",
      "routes.1.rewrite.replacePrefix.to: a rewritten path has no '?' or '#' (the client's query is kept)",
    ]);
  });

  test('several problems at once are all reported', () => {
    const c = mutate((c) => {
      c.upstreams.users!.targets = [];
      c.routes[0]!.upstream = 'nobody';
    });
    const p = problems(c);
    assert.equal(p.length, 2);
    assert.ok(p.includes('upstreams.users.targets: an upstream needs targets, or discovery'), p.join());
    assert.ok(p.includes('routes.0.upstream: no upstream named "nobody"'), p.join());
  });

  test('YAML and JSON syntax errors are ConfigErrors naming the file', () => {
    assert.throws(
      () => parseConfigText('routes: [1, 2\nupstreams: {}\n', 'gw.yaml'),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 1);
        assert.match(err.problems[0]!, /^\(syntax\): .*line 2, column 1/);
        assert.match(err.message, /in gw\.yaml:/);
        return true;
      },
    );
    assert.throws(
      () => parseConfigText('{"routes": [],}', 'gw.json'),
      (err: unknown) => err instanceof ConfigError && /^\(syntax\): /.test(err.problems[0]!),
    );
    // .json is strict JSON; other extensions parse YAML (a superset).
    assert.deepEqual(parseConfigText('{"a": 1}', 'gw.conf'), { a: 1 });
  });

  test('an empty document is refused at the root', () => {
    const p = problems(parseConfigText('', 'empty.yaml'));
    assert.equal(p.length, 1);
    assert.match(p[0]!, /^\(root\): /);
  });
});

describe('configuration files', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'netloom-gw-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const yaml = `# a comment
listeners:
  - address: 127.0.0.1:0
upstreams:
  users:
    balance: weighted_round_robin
    targets:
      - { address: 127.0.0.1:9101, weight: 3 }
      - address: 127.0.0.1:9102
    healthCheck: { path: /ping, interval: 100 }
routes:
  - name: users
    match: { path: /users/:id, pathType: exact, methods: [GET, PUT] }
    upstream: users
    rewrite: { replacePrefix: { from: /users, to: /v2/users } }
    requestHeaders:
      add: { x-from: gateway }
      remove: [cookie]
`;
  const json = {
    listeners: [{ address: '127.0.0.1:0' }],
    upstreams: {
      users: {
        balance: 'weighted_round_robin',
        targets: [{ address: '127.0.0.1:9101', weight: 3 }, { address: '127.0.0.1:9102' }],
        healthCheck: { path: '/ping', interval: 100 },
      },
    },
    routes: [
      {
        name: 'users',
        match: { path: '/users/:id', pathType: 'exact', methods: ['GET', 'PUT'] },
        upstream: 'users',
        rewrite: { replacePrefix: { from: '/users', to: '/v2/users' } },
        requestHeaders: { add: { 'x-from': 'gateway' }, remove: ['cookie'] },
      },
    ],
  };

  test('valid YAML and JSON files load, to the same configuration', async () => {
    await writeFile(join(dir, 'gw.yaml'), yaml);
    await writeFile(join(dir, 'gw.json'), JSON.stringify(json));
    const fromYaml = await loadConfigFile(join(dir, 'gw.yaml'));
    const fromJson = await loadConfigFile(join(dir, 'gw.json'));
    assert.deepEqual(fromYaml, fromJson);
    assert.deepEqual(fromYaml, configSchema.parse(json));
    assert.equal(fromYaml.upstreams.users!.healthCheck!.timeout, 2000, 'defaults inside optional sections');
    assert.equal(fromYaml.upstreams.users!.targets[1]!.weight, 1);
  });

  test('an invalid file is refused with its path and the problem paths', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, yaml.replace('upstream: users', 'upstream: user'));
    await assert.rejects(loadConfigFile(file), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.problems, ['routes.0.upstream: no upstream named "user"']);
      assert.ok(err.message.includes(file));
      return true;
    });
    await writeFile(file, 'listeners: [\n');
    await assert.rejects(loadConfigFile(file), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.match(err.problems[0]!, /^\(syntax\): /);
      return true;
    });
  });

  test('startGateway refuses to start on an invalid file', async () => {
    const file = join(dir, 'bad-start.yaml');
    await writeFile(file, yaml.replace('weight: 3', 'weight: -1'));
    await assert.rejects(startGateway({ source: file, watch: false }), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.problems, [
        'upstreams.users.targets.0.weight: Too small: expected number to be >=1',
      ]);
      return true;
    });
  });
});

describe('a running gateway and an invalid reload', () => {
  let up: TestUpstream;
  before(async () => {
    up = await httpUpstream(echoHandler('up'));
  });
  after(() => up.close());

  test('is refused with its problems; the old configuration keeps serving', async (t) => {
    const good = gatewayConfig({ a: upstreamOf([up.address]) }, [
      { name: 'r', match: { path: '/ok' }, upstream: 'a' },
    ]);
    const gw = await startTestGateway(good);
    t.after(() => gw.stop());
    const stderrWrite = process.stderr.write;
    const logged: string[] = [];
    process.stderr.write = ((chunk: string | Uint8Array) => {
      logged.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    let result: Awaited<ReturnType<typeof gw.gateway.reload>>;
    try {
      gw.source.set({
        ...good,
        routes: [
          { name: 'r', match: { path: '/ok' }, upstream: 'a' },
          { name: 'r', match: { path: '/new' }, upstream: 'missing' },
        ],
      });
      result = await gw.gateway.reload();
    } finally {
      process.stderr.write = stderrWrite;
    }
    assert.deepEqual(result, {
      ok: false,
      version: 1,
      problems: ['routes.1.upstream: no upstream named "missing"', 'routes.1.name: duplicate route name "r"'],
    });
    assert.match(logged.join(''), /reload refused, keeping version 1/);
    assert.equal(gw.gateway.version, 1);
    const r = await sendJson<Echo>(gw.port, '/ok/x');
    assert.equal(r.status, 200);
    assert.equal(r.json.url, '/ok/x');
    assert.equal(
      (await sendJson<{ error: string }>(gw.port, '/new')).status,
      404,
      'the refused route is absent',
    );

    // An unknown filter is a configuration error too, found on the main thread (no loop sees the version).
    gw.source.set({
      ...good,
      routes: [{ name: 'r', match: { path: '/ok' }, upstream: 'a', filters: [{ name: 'no-such-filter' }] }],
    });
    const loopResult = await gw.gateway.reload();
    assert.equal(loopResult.ok, false);
    assert.equal(loopResult.version, 1);
    assert.ok(!loopResult.ok && /no filter named "no-such-filter"/.test(loopResult.problems.join()));
    assert.equal((await sendJson<Echo>(gw.port, '/ok')).status, 200);

    gw.source.set({ ...good, routes: [{ name: 'r2', match: { path: '/new' }, upstream: 'a' }] });
    assert.deepEqual(await gw.gateway.reload(), { ok: true, version: 2, changed: true, restartRequired: [] });
    assert.equal((await sendJson<Echo>(gw.port, '/new')).status, 200);
    assert.equal((await sendJson<{ error: string }>(gw.port, '/ok')).status, 404);
  });
});
