// The compiled router: specificity (exact, parameters, prefixes at segment boundaries), constraints,
// declaration order, hosts (exact, wildcard, any) with fallthrough, parameters and trailing slashes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type HeaderSource, Router, type RouteSpec } from 'netloom/gateway';

type Spec = Omit<RouteSpec<string>, 'pathType'> & { pathType?: 'exact' | 'prefix' };

function router(specs: Spec[]): Router<string> {
  return new Router(specs.map((s) => ({ pathType: 'prefix', ...s })));
}

function headers(h: Record<string, string> = {}): HeaderSource {
  const lower = new Map(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
  return { header: (name) => lower.get(name.toLowerCase()) };
}

/** The matched route's name, or null. */
function route(
  r: Router<string>,
  path: string,
  opts: { host?: string; method?: string; headers?: Record<string, string> } = {},
): string | null {
  return r.match(opts.host, path, opts.method ?? 'GET', headers(opts.headers))?.value ?? null;
}

describe('path specificity', () => {
  const r = router([
    { value: 'prefix-users', path: '/users' },
    { value: 'param-user', path: '/users/:id', pathType: 'exact' },
    { value: 'exact-me', path: '/users/me', pathType: 'exact' },
    { value: 'root', path: '/' },
  ]);

  test('exact beats a parameter pattern beats a prefix', () => {
    assert.equal(route(r, '/users/me'), 'exact-me');
    assert.equal(route(r, '/users/42'), 'param-user');
    assert.equal(route(r, '/users'), 'prefix-users');
    assert.equal(route(r, '/users/42/posts'), 'prefix-users', 'an exact pattern does not match deeper paths');
  });

  test('declaration order does not decide specificity', () => {
    const reversed = router([
      { value: 'root', path: '/' },
      { value: 'exact-me', path: '/users/me', pathType: 'exact' },
      { value: 'param-user', path: '/users/:id', pathType: 'exact' },
      { value: 'prefix-users', path: '/users' },
    ]);
    for (const p of ['/users/me', '/users/42', '/users', '/users/42/posts', '/other'])
      assert.equal(route(reversed, p), route(r, p), p);
  });

  test('prefixes match at segment boundaries only', () => {
    assert.equal(route(r, '/usersx'), 'root');
    assert.equal(route(r, '/user'), 'root');
    assert.equal(route(r, '/users/'), 'prefix-users');
    const noRoot = router([{ value: 'api', path: '/api' }]);
    assert.equal(route(noRoot, '/api'), 'api');
    assert.equal(route(noRoot, '/api/v1/x'), 'api');
    assert.equal(route(noRoot, '/apiv1'), null);
    assert.equal(route(noRoot, '/'), null);
  });

  test('the longer prefix wins, whatever the declaration order', () => {
    const p = router([
      { value: 'a', path: '/a' },
      { value: 'abc', path: '/a/b/c' },
      { value: 'ab', path: '/a/b' },
    ]);
    assert.equal(route(p, '/a/x'), 'a');
    assert.equal(route(p, '/a/b'), 'ab');
    assert.equal(route(p, '/a/b/x/y'), 'ab');
    assert.equal(route(p, '/a/b/c'), 'abc');
    assert.equal(route(p, '/a/b/c/d'), 'abc');
  });

  test('a static segment beats a parameter at the same depth; parameter prefixes cover deeper paths', () => {
    const p = router([
      { value: 'files-param', path: '/files/:name' },
      { value: 'files-static', path: '/files/readme' },
    ]);
    assert.equal(route(p, '/files/readme'), 'files-static');
    assert.equal(route(p, '/files/readme/raw'), 'files-static');
    assert.equal(route(p, '/files/other'), 'files-param');
    assert.equal(route(p, '/files/other/raw'), 'files-param');
    assert.equal(route(p, '/files'), null, 'a parameter needs a segment');
    assert.equal(route(p, '/files/'), null, 'an empty segment does not fill a parameter');
  });

  test('an exact root route matches only /', () => {
    const p = router([{ value: 'root-exact', path: '/', pathType: 'exact' }]);
    assert.equal(route(p, '/'), 'root-exact');
    assert.equal(route(p, '/x'), null);
  });
});

describe('constraints and order', () => {
  test('a method-constrained route beats an unconstrained one, and falls through when the method differs', () => {
    const r = router([
      { value: 'any', path: '/items' },
      { value: 'post', path: '/items', methods: ['POST', 'PUT'] },
    ]);
    assert.equal(route(r, '/items', { method: 'POST' }), 'post');
    assert.equal(route(r, '/items', { method: 'PUT' }), 'post');
    assert.equal(route(r, '/items', { method: 'GET' }), 'any');
    const only = router([{ value: 'post', path: '/items', methods: ['POST'] }]);
    assert.equal(route(only, '/items', { method: 'GET' }), null);
  });

  test('header constraints: exact values, names case-insensitive, more constraints win', () => {
    const r = router([
      { value: 'plain', path: '/v' },
      { value: 'beta', path: '/v', headers: { 'X-Version': 'beta' } },
      { value: 'beta-mobile', path: '/v', headers: { 'x-version': 'beta', 'X-Client': 'mobile' } },
    ]);
    assert.equal(route(r, '/v'), 'plain');
    assert.equal(route(r, '/v', { headers: { 'x-version': 'beta' } }), 'beta');
    assert.equal(route(r, '/v', { headers: { 'X-VERSION': 'beta', 'x-client': 'mobile' } }), 'beta-mobile');
    assert.equal(route(r, '/v', { headers: { 'x-version': 'Beta' } }), 'plain', 'values compare exactly');
    assert.equal(route(r, '/v', { headers: { 'x-client': 'mobile' } }), 'plain');
  });

  test('a longer path beats more constraints', () => {
    const r = router([
      { value: 'short-constrained', path: '/a', methods: ['GET'], headers: { x: '1' } },
      { value: 'long', path: '/a/b' },
    ]);
    assert.equal(route(r, '/a/b', { headers: { x: '1' } }), 'long');
  });

  test('equally specific routes: the first declared wins', () => {
    const r = router([
      { value: 'first', path: '/same' },
      { value: 'second', path: '/same' },
      { value: 'p1', path: '/p/:a', pathType: 'exact' },
      { value: 'p2', path: '/p/:b', pathType: 'exact' },
    ]);
    assert.equal(route(r, '/same/x'), 'first');
    assert.equal(route(r, '/p/1'), 'p1');
    const swapped = router([
      { value: 'second', path: '/same' },
      { value: 'first', path: '/same' },
    ]);
    assert.equal(route(swapped, '/same/x'), 'second');
  });
});

describe('hosts', () => {
  const r = router([
    { value: 'any-root', path: '/' },
    { value: 'any-api', path: '/api' },
    { value: 'exact-host', path: '/', host: 'api.example.com' },
    { value: 'exact-host-port', path: '/', host: 'api.example.com:8443' },
    { value: 'exact-only-admin', path: '/admin', host: 'Admin.Example.com' },
    { value: 'wild', path: '/', host: '*.example.com' },
    { value: 'wild-longer', path: '/', host: '*.eu.example.com' },
    { value: 'star', path: '/star', host: '*' },
  ]);

  test('an exact host beats a wildcard beats any host; case-insensitive; ports', () => {
    assert.equal(route(r, '/x', { host: 'api.example.com' }), 'exact-host');
    assert.equal(
      route(r, '/x', { host: 'API.EXAMPLE.COM:80' }),
      'exact-host',
      'host:port falls back to host',
    );
    assert.equal(route(r, '/x', { host: 'api.example.com:8443' }), 'exact-host-port');
    assert.equal(route(r, '/x', { host: 'www.example.com' }), 'wild');
    assert.equal(route(r, '/x', { host: 'a.eu.example.com' }), 'wild-longer', 'the longest wildcard first');
    assert.equal(route(r, '/x', { host: 'example.com' }), 'any-root', '*.example.com needs a subdomain');
    assert.equal(route(r, '/x', { host: 'other.org' }), 'any-root');
    assert.equal(route(r, '/x'), 'any-root', 'no Host header: any-host routes');
  });

  test('a host table without a matching route falls through to wildcards, then to any host', () => {
    const f = router([
      { value: 'exact-admin', path: '/admin', host: 'a.example.com' },
      { value: 'wild-web', path: '/web', host: '*.example.com' },
      { value: 'any-api', path: '/api' },
    ]);
    assert.equal(route(f, '/admin', { host: 'a.example.com' }), 'exact-admin');
    assert.equal(route(f, '/web', { host: 'a.example.com' }), 'wild-web');
    assert.equal(route(f, '/api', { host: 'a.example.com' }), 'any-api');
    assert.equal(route(f, '/admin', { host: 'b.example.com' }), null);
    assert.equal(route(f, '/nothing', { host: 'a.example.com' }), null);
  });

  test('an exact-host route wins even when an any-host route is more specific', () => {
    assert.equal(route(r, '/api', { host: 'api.example.com' }), 'exact-host');
    assert.equal(route(r, '/api', { host: 'elsewhere' }), 'any-api');
    assert.equal(route(r, '/admin', { host: 'admin.example.com' }), 'exact-only-admin');
    assert.equal(route(r, '/star', { host: 'x' }), 'star', '* is any host');
  });

  test('IPv6 literal hosts with ports', () => {
    const v6 = router([
      { value: 'v6', path: '/', host: '[::1]' },
      { value: 'any', path: '/' },
    ]);
    assert.equal(route(v6, '/', { host: '[::1]:8080' }), 'v6');
    assert.equal(route(v6, '/', { host: '[::2]:8080' }), 'any');
  });
});

describe('parameters and slashes', () => {
  test('parameters are extracted by name; prefix parameter routes extract the covered segments', () => {
    const r = router([
      { value: 'post', path: '/users/:userId/posts/:postId', pathType: 'exact' },
      { value: 'user', path: '/users/:userId' },
      { value: 'static', path: '/static' },
    ]);
    const h = headers();
    assert.deepEqual(r.match(undefined, '/users/7/posts/99', 'GET', h), {
      value: 'post',
      params: { userId: '7', postId: '99' },
    });
    assert.deepEqual(r.match(undefined, '/users/abc/settings/x', 'GET', h), {
      value: 'user',
      params: { userId: 'abc' },
    });
    assert.deepEqual(r.match(undefined, '/static/a', 'GET', h), { value: 'static', params: null });
    assert.deepEqual(
      r.match(undefined, '/users/%20x', 'GET', h)?.params,
      { userId: '%20x' },
      'raw, undecoded',
    );
  });

  test('parameters come from the winning branch, not from a sibling branch tried on the way', () => {
    // Equally specific (depth 3, two static segments each): declaration order decides.
    const staticFirst = router([
      { value: 'b', path: '/x/fixed/:two', pathType: 'exact' },
      { value: 'a', path: '/x/:one/y', pathType: 'exact' },
    ]);
    assert.deepEqual(staticFirst.match(undefined, '/x/fixed/y', 'GET', headers()), {
      value: 'b',
      params: { two: 'y' },
    });
    assert.deepEqual(staticFirst.match(undefined, '/x/other/y', 'GET', headers()), {
      value: 'a',
      params: { one: 'other' },
    });
    const paramFirst = router([
      { value: 'a', path: '/x/:one/y', pathType: 'exact' },
      { value: 'b', path: '/x/fixed/:two', pathType: 'exact' },
    ]);
    assert.deepEqual(paramFirst.match(undefined, '/x/fixed/y', 'GET', headers()), {
      value: 'a',
      params: { one: 'fixed' },
    });
  });

  test('a trailing slash in the request: /a/ matches the routes of /a, exact ones included', () => {
    const r = router([
      { value: 'exact', path: '/a', pathType: 'exact' },
      { value: 'prefix-b', path: '/b' },
    ]);
    assert.equal(route(r, '/a'), 'exact');
    assert.equal(route(r, '/a/'), 'exact');
    assert.equal(route(r, '/a/x'), null);
    assert.equal(route(r, '/b/'), 'prefix-b');
    assert.equal(route(r, '/b//'), 'prefix-b');
  });

  test('matching is repeatable (the scratch state is reset between matches)', () => {
    const r = router([
      { value: 'p', path: '/u/:id', pathType: 'exact' },
      { value: 'q', path: '/q' },
    ]);
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(r.match(undefined, `/u/${i}`, 'GET', headers()), {
        value: 'p',
        params: { id: `${i}` },
      });
      assert.deepEqual(r.match(undefined, '/q/1', 'GET', headers()), { value: 'q', params: null });
      assert.equal(r.match(undefined, '/none', 'GET', headers()), null);
    }
  });
});

describe('route patterns with a trailing slash', () => {
  // Regression (found by the test helper): the configuration accepts `path: /api/`, but the pattern compiles to segments
  // ['api', ''] and the matcher never visits an empty last segment, so the route matches neither /api/ nor
  // /api/x (only /api//). A route written the common way, with a trailing slash, is silently dead.
  test('a prefix route /api/ matches /api/x and an exact route /api/ matches /api/', () => {
    const prefix = router([{ value: 'api-slash', path: '/api/' }]);
    assert.equal(route(prefix, '/api/x'), 'api-slash');
    const exact = router([{ value: 'api-slash', path: '/api/', pathType: 'exact' }]);
    assert.equal(route(exact, '/api/'), 'api-slash');
  });
});
