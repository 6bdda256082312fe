// proxy: the netloom gateway (1 loop) against nginx (proxy_pass, upstream keepalive), haproxy, a node:http
// proxy with a keep-alive agent and an undici pool proxy, all in front of the same upstream (nginx
// `return 200`) on the same core as the proxy; wrk with 100 keep-alive connections on the other core.
// Governance contenders: a per-address token bucket and a circuit breaker on the route, locally and with
// the limit on Redis (redis-server on the proxy's core); then the Redis limit's accuracy when it binds:
// two gateway processes under more load than a 5,000 req/s limit.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHaproxy } from '../haproxy.ts';
import { compare, freePort, NODE, NODE_ARGS, ROOT, requireTools, startServer } from '../harness.ts';
import { startNginx } from '../nginx.ts';
import { startRedis } from '../redis.ts';
import { wrk } from '../wrk.ts';

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  requireTools(['nginx', 'haproxy', 'wrk', 'redis-server']);
  const upstream = await startNginx(
    'upstream',
    `location / { default_type text/plain; return 200 'Hello, World!'; }`,
  );
  const up = upstream.port;
  const redis = await startRedis();
  const redisUrl = `redis://127.0.0.1:${redis.port}`;
  const bare = { forwarded: false, requestId: false, traceparent: false };
  const breaker = { name: 'circuit-breaker' };
  const dir = mkdtempSync(join(tmpdir(), 'netloom-bench-proxy-'));
  try {
    await compare({
      workload: 'proxy',
      contenders: [
        {
          name: 'netloom gateway',
          start: () => startGateway('netloom gateway', dir, up, {}),
        },
        {
          name: 'netloom gateway, bare',
          start: () =>
            startGateway('netloom gateway, bare', dir, up, {
              proxyHeaders: { forwarded: false, requestId: false, traceparent: false },
            }),
        },
        {
          // Governance on the route: a per-address token bucket that admits everything (its cost, not its
          // refusals) and a circuit breaker, as the local-governance contender.
          name: 'netloom gateway, bare + governance',
          start: () =>
            startGateway('netloom gateway, bare + governance', dir, up, {
              proxyHeaders: bare,
              filters: [
                {
                  name: 'rate-limit',
                  limits: [{ algorithm: 'token-bucket', key: ['ip'], rate: 1_000_000, burst: 1_000_000 }],
                },
                breaker,
              ],
            }),
        },
        {
          // The same limit on Redis, leasing 100 tokens a call: a Redis round trip every 100 requests,
          // as a key near its limit with the default lease (2% of its rate) costs.
          name: 'netloom gateway, bare + governance on Redis',
          start: () =>
            startGateway('netloom gateway, bare + governance on Redis', dir, up, {
              proxyHeaders: bare,
              filters: [
                {
                  name: 'rate-limit',
                  limits: [{ algorithm: 'token-bucket', key: ['ip'], rate: 1_000_000, burst: 1_000_000 }],
                  redis: { url: redisUrl, prefix: 'bench:', lease: { tokens: 100 } },
                },
                breaker,
              ],
            }),
        },
        {
          name: 'nginx proxy',
          start: () =>
            startNginx(
              'nginx proxy',
              `location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }`,
              `upstream up { server 127.0.0.1:${up}; keepalive 128; }`,
            ),
        },
        {
          // nginx told to add what the gateway adds by default. Its $request_id is 32 hex digits, which
          // also serves as the trace id; the span id is the first half of it (nginx has no second random).
          name: 'nginx proxy, same fields',
          start: () =>
            startNginx(
              'nginx proxy, same fields',
              [
                'location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";',
                '  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
                '  proxy_set_header X-Forwarded-Proto $scheme;',
                '  proxy_set_header X-Forwarded-Host $host;',
                '  proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=\\"$http_host\\"";',
                '  proxy_set_header X-Request-Id $request_id;',
                '  proxy_set_header traceparent "00-$request_id-$span_id-01";',
                '  add_header X-Request-Id $request_id; }',
              ].join('\n'),
              [
                `upstream up { server 127.0.0.1:${up}; keepalive 128; }`,
                'map $request_id $span_id { "~^(?<s>[0-9a-f]{16})" $s; }',
              ].join('\n'),
            ),
        },
        {
          name: 'haproxy',
          start: () => startHaproxy(dir, up, ['option http-keep-alive', 'http-reuse always']),
        },
        {
          name: 'node:http proxy',
          start: async () =>
            startServer('node:http proxy', NODE, [
              ...NODE_ARGS,
              join(ROOT, 'bench/peers/node-proxy.ts'),
              '0',
              String(up),
            ]),
        },
        {
          name: 'undici proxy',
          start: async () =>
            startServer('undici proxy', NODE, [
              ...NODE_ARGS,
              join(ROOT, 'bench/peers/undici-proxy.ts'),
              '0',
              String(up),
            ]),
        },
      ],
      scenarios: [
        {
          name: 'keep-alive, 100 conns',
          measure: (s, seconds) => wrk(s.port, { connections: 100, seconds }),
        },
      ],
      peer: 'nginx proxy',
      pairs: [
        ['netloom gateway, bare', 'nginx proxy'],
        ['netloom gateway, bare + governance', 'netloom gateway, bare'],
        ['netloom gateway, bare + governance on Redis', 'netloom gateway, bare'],
        ['netloom gateway', 'nginx proxy, same fields'],
        ['netloom gateway, bare', 'node:http proxy'],
        ['netloom gateway, bare', 'undici proxy'],
      ],
      rounds: args.rounds,
      seconds: args.seconds,
      warmupSeconds: 2,
      notes: [
        'targets: bare >= 0.95x nginx; default >= 0.9x nginx with the same fields; >= 3x the undici proxy;',
        'governance (a token bucket that admits everything, and a breaker) costs <= 5% of the bare gateway',
        'locally, <= 15% with the limit on Redis (the cost is the checks and the leases, not refusals)',
        'the gateway adds X-Forwarded-*, Forwarded, X-Request-Id and traceparent by default; "bare" turns them',
        'off (the work nginx, haproxy and the node proxies do); "nginx proxy, same fields" adds them in nginx',
        'CPU µs/op covers the proxy only (the upstream shares its core)',
      ],
    });
    await redisAccuracy(dir, up, redisUrl, args.seconds);
  } finally {
    await upstream.stop();
    await redis.stop();
  }
}

/**
 * The Redis limit when it binds: two gateway processes (1 loop each) share a 5,000 req/s token bucket on
 * the route (default lease: 100 tokens), each under its own wrk (50 connections), several times the limit
 * offered; what they admitted together against the limit.
 */
async function redisAccuracy(dir: string, up: number, url: string, seconds: number): Promise<void> {
  const rate = 5000;
  const route = {
    proxyHeaders: { forwarded: false, requestId: false, traceparent: false },
    filters: [
      {
        name: 'rate-limit',
        limits: [{ algorithm: 'token-bucket', key: ['route'], rate, burst: 500 }],
        redis: { url, prefix: `accuracy-${Date.now()}:` },
      },
    ],
  };
  // Admin endpoints, to tell a limit Redis decided from requests admitted because it could not (failOpen).
  const admins = [await freePort(), await freePort()];
  const admin = (port: number) => ({ admin: { address: `127.0.0.1:${port}` } });
  const a = await startGateway('redis accuracy a', dir, up, route, admin(admins[0]!));
  const b = await startGateway('redis accuracy b', dir, up, route, admin(admins[1]!));
  try {
    // A warm-up spends the burst; the measured run is the sustained rate.
    await Promise.all([a, b].map((s) => wrk(s.port, { connections: 50, seconds: 1 })));
    const samples = await Promise.all([a, b].map((s) => wrk(s.port, { connections: 50, seconds })));
    const offered = samples.reduce((n, s) => n + s.rate, 0);
    const admitted = samples.reduce((n, s) => n + s.rate - Number(s.non2xx) / seconds, 0);
    console.log(
      `\nRedis limit of ${rate} req/s shared by 2 gateway processes, ${Math.round(offered)} req/s offered: ` +
        `${Math.round(admitted)} req/s admitted (${((admitted / rate - 1) * 100).toFixed(1)}% off the limit)`,
    );
    const redis = await Promise.all(
      admins.map(async (port) => {
        const stats = (await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as {
          rateLimits: { redis: Record<string, number> };
        };
        return stats.rateLimits.redis;
      }),
    );
    const sum = (k: string) => redis.reduce((n, r) => n + (r[k] ?? 0), 0);
    console.log(
      `Redis calls ${sum('calls')}, errors ${sum('errors')}, admitted while Redis failed ${sum('failOpen')}, ` +
        `breaker opened ${sum('breakerOpened')}`,
    );
  } finally {
    await a.stop();
    await b.stop();
  }
}

/**
 * Starts the gateway (1 loop) with one catch-all route to the upstream; `route` adds route settings,
 * `extra` top-level ones.
 */
async function startGateway(
  name: string,
  dir: string,
  up: number,
  route: Record<string, unknown>,
  extra: Record<string, unknown> = {},
) {
  const port = await freePort();
  const config = join(dir, `${name.replace(/\W+/g, '-')}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      listeners: [{ address: `127.0.0.1:${port}`, loops: 1 }],
      upstreams: { up: { targets: [{ address: `127.0.0.1:${up}` }], retries: 0 } },
      routes: [{ name: 'all', match: { path: '/' }, upstream: 'up', ...route }],
      ...extra,
    }),
  );
  return startServer(name, NODE, [...NODE_ARGS, join(ROOT, 'bin/netloom-gateway.js'), '--config', config], {
    port,
  });
}
