// The gateway's Prometheus endpoint (issue 16): GET /metrics on the admin port, aggregated over the loops
// from shared memory, checked by promtool and compared with what a load did (our own client's exact
// counts, and a wrk run's).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { describe, test } from 'node:test';
import { parseExposition, promtool } from '../fixtures/prometheus.ts';
import {
  deadAddress,
  gatewayConfig,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
} from './support.ts';

const TOKEN = 'metrics-admin-token-0123456789';

async function scrape(port: number): Promise<{ text: string; parsed: Map<string, number>; type: string }> {
  const r = await send(port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, r.text);
  return { text: r.text, parsed: parseExposition(r.text), type: String(r.headers['content-type']) };
}

function total(parsed: Map<string, number>, prefix: string): number {
  let n = 0;
  for (const [k, v] of parsed) if (k.startsWith(prefix)) n += v;
  return n;
}

async function load(port: number, paths: string[], concurrency = 16): Promise<Map<number, number>> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const statuses = new Map<number, number>();
  try {
    for (let i = 0; i < paths.length; i += concurrency) {
      const replies = await Promise.all(paths.slice(i, i + concurrency).map((p) => send(port, p, { agent })));
      for (const r of replies) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
  } finally {
    agent.destroy();
  }
  return statuses;
}

describe('gateway metrics', () => {
  test('counts by route, upstream and status class match the load over 2 loops; promtool accepts them', async (t) => {
    const up = await httpUpstream((req, res) => {
      const status = req.url?.startsWith('/api/missing') ? 404 : 200;
      res.writeHead(status, { 'content-length': '2' });
      res.end('ok');
    });
    const dead = await deadAddress();
    t.after(() => up.close());
    const config = gatewayConfig(
      { app: upstreamOf([up.address]), gone: upstreamOf([dead], { retries: 0 }) },
      [
        { name: 'api', domain: 'shop', match: { path: '/api' }, upstream: 'app' },
        { name: 'down', match: { path: '/down' }, upstream: 'gone' },
      ],
      {
        listeners: [{ address: '127.0.0.1:0', loops: 2 }],
        admin: { address: '127.0.0.1:0', token: TOKEN },
      },
    );
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    const admin = gw.gateway.admin!.port;
    const paths = [
      ...Array.from({ length: 1500 }, (_, i) => `/api/item/${i}`),
      ...Array.from({ length: 300 }, (_, i) => `/api/missing/${i}`),
      ...Array.from({ length: 40 }, () => '/down'),
      ...Array.from({ length: 60 }, (_, i) => `/nowhere/${i}`),
    ];
    const statuses = await load(gw.port, paths);
    assert.equal(statuses.get(200), 1500);
    assert.equal(statuses.get(404), 360);
    assert.equal(statuses.get(502), 40);
    await sleep(100); // the loops publish every 20 ms
    const { text, parsed, type } = await scrape(admin);
    assert.equal(type, 'text/plain; version=0.0.4; charset=utf-8');
    const check = promtool(text);
    assert.equal(check.status, 0, check.output);
    const requests = (route: string, domain: string, upstream: string, status: string) =>
      parsed.get(
        `netloom_gateway_requests_total{route="${route}",domain="${domain}",upstream="${upstream}",status="${status}"}`,
      );
    assert.equal(requests('api', 'shop', 'app', '2xx'), 1500);
    assert.equal(requests('api', 'shop', 'app', '4xx'), 300);
    assert.equal(requests('down', 'default', 'gone', '5xx'), 40);
    assert.equal(parsed.get('netloom_gateway_unrouted_requests_total{reason="no-route"}'), 60);
    assert.equal(parsed.get('netloom_gateway_request_duration_seconds_count{route="api"}'), 1800);
    assert.equal(parsed.get('netloom_gateway_request_duration_seconds_bucket{route="api",le="+Inf"}'), 1800);
    assert.equal(parsed.get('netloom_gateway_upstream_first_byte_seconds_count{upstream="app"}'), 1800);
    assert.equal(parsed.get('netloom_gateway_failures_total{route="down",kind="connect-failed"}'), 40);
    assert.equal(parsed.get('netloom_gateway_response_body_bytes_total{route="api"}'), 1800 * 2);
    // Both loops served (the series are summed over them) and the engine counters agree with the load.
    const accepted = [...parsed].filter(([k]) => k.startsWith('netloom_connections_accepted_total{'));
    assert.deepEqual(accepted.map(([k]) => /loop="(\d)"/.exec(k)?.[1]).sort(), ['0', '1'], 'a series a loop');
    assert.ok(
      accepted.every(([k]) => k.includes(`listener="${gw.gateway.listeners[0]!.address}"`)),
      JSON.stringify(accepted),
    );
    assert.ok(total(parsed, 'netloom_connections_accepted_total{') >= 16);
    assert.equal(parsed.get('netloom_gateway_config_version'), 1);
    // Pools: the gauges are set every second.
    await sleep(1100);
    const later = (await scrape(admin)).parsed;
    assert.ok(
      (later.get(
        `netloom_gateway_pool_events_total{upstream="app",target="${up.address}",event="created"}`,
      ) ?? 0) >= 1,
      'pool connections created',
    );
    assert.equal(later.get(`netloom_gateway_pool_waiting{upstream="app",target="${up.address}"}`), 0);
  });

  test('a reload is counted; /metrics needs the admin token', async (t) => {
    const up = await httpUpstream((_req, res) => res.end('ok'));
    t.after(() => up.close());
    const config = gatewayConfig(
      { app: upstreamOf([up.address]) },
      [{ name: 'a', match: { path: '/' }, upstream: 'app' }],
      { admin: { address: '127.0.0.1:0', token: TOKEN } },
    );
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    const admin = gw.gateway.admin!.port;
    assert.equal((await send(admin, '/metrics')).status, 401);
    assert.equal((await gw.gateway.reload()).ok, true); // unchanged
    const changed = structuredClone(config) as { routes: Record<string, unknown>[] };
    changed.routes[0]!.domain = 'other';
    await gw.source.set(changed);
    assert.equal((await gw.gateway.reload()).ok, true);
    await gw.source.set({ ...changed, routes: [{ name: 'a', match: { path: '/' }, upstream: 'nope' }] });
    assert.equal((await gw.gateway.reload()).ok, false);
    const { parsed } = await scrape(admin);
    assert.equal(parsed.get('netloom_gateway_reloads_total{result="applied"}'), 1);
    assert.equal(parsed.get('netloom_gateway_reloads_total{result="unchanged"}'), 1);
    assert.equal(parsed.get('netloom_gateway_reloads_total{result="refused"}'), 1);
    assert.equal(parsed.get('netloom_gateway_config_version'), 2);
    // A route whose domain changed counts under its new labels.
    await send(gw.port, '/x');
    await sleep(60);
    const after = (await scrape(admin)).parsed;
    assert.equal(
      after.get('netloom_gateway_requests_total{route="a",domain="other",upstream="app",status="2xx"}'),
      1,
    );
  });

  test('the counts match a wrk run (within the connections wrk cuts at its end)', async (t) => {
    if (spawnSync('wrk', ['--version']).error !== undefined) return t.skip('wrk is not installed');
    const up = await httpUpstream((_req, res) => {
      res.writeHead(200, { 'content-length': '5' });
      res.end('hello');
    });
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig(
        { app: upstreamOf([up.address]) },
        [{ name: 'hello', match: { path: '/' }, upstream: 'app' }],
        {
          listeners: [{ address: '127.0.0.1:0', loops: 2 }],
          admin: { address: '127.0.0.1:0', token: TOKEN },
        },
      ),
    );
    t.after(() => gw.stop());
    const connections = 8;
    // Asynchronously: the upstream runs on this thread.
    const wrk = spawn('wrk', ['-t1', `-c${connections}`, '-d2s', `http://127.0.0.1:${gw.port}/`]);
    let stdout = '';
    wrk.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    const status = await new Promise<number | null>((resolve) => wrk.once('exit', resolve));
    const run = { stdout };
    assert.equal(status, 0, stdout);
    const done = Number(/(\d+) requests in/.exec(run.stdout)?.[1]);
    assert.ok(done > 100, run.stdout);
    assert.ok(!/Non-2xx/.test(run.stdout), run.stdout);
    await sleep(200);
    const { parsed } = await scrape(gw.gateway.admin!.port);
    const counted = parsed.get(
      'netloom_gateway_requests_total{route="hello",domain="default",upstream="app",status="2xx"}',
    )!;
    // wrk counts the responses it read; requests in flight when it stopped may be answered but not read.
    assert.ok(counted >= done && counted <= done + connections, `gateway ${counted}, wrk ${done}`);
    // Every request once, answered or cut when wrk left (status "none").
    assert.equal(
      parsed.get('netloom_gateway_request_duration_seconds_count{route="hello"}'),
      total(parsed, 'netloom_gateway_requests_total{route="hello"'),
    );
  });
});
