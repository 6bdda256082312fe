// Review of the exposition: promtool must accept /metrics with every source on at once (2 loops, tracing,
// a log shipper, rate limits on Redis, circuits, mirrors, WebSockets) and with configuration names holding
// the characters label values must escape (quotes, backslashes, newlines) or carry as UTF-8.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parseExposition, promtool } from '../../fixtures/prometheus.ts';
import { type RedisServer, startRedis } from '../redis-support.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';
const ODD = ['quote"d', 'back\\slash', 'new\nline', 'café ☕ 名前', 'tab\there', '\\"\\n'];

let redis: RedisServer;
before(async () => {
  redis = await startRedis();
});
after(() => redis.stop());

test('promtool accepts /metrics with every source on and odd names', async (t) => {
  const up = await httpUpstream((req, res) => {
    res.writeHead(req.url?.includes('fail') ? 500 : 200, { 'content-length': '2' });
    res.end('ok');
  });
  const shadow = await httpUpstream((_req, res) => res.end('shadow'));
  const otlp = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('{}'));
  });
  await new Promise<void>((resolve) => otlp.listen(0, '127.0.0.1', resolve));
  t.after(() =>
    Promise.all([up.close(), shadow.close(), new Promise<void>((resolve) => otlp.close(() => resolve()))]),
  );
  const endpoint = `http://127.0.0.1:${(otlp.address() as net.AddressInfo).port}/v1/traces`;
  const upstreams: Record<string, Record<string, unknown>> = {
    shadow: upstreamOf([shadow.address]),
  };
  const routes: Record<string, unknown>[] = [];
  ODD.forEach((name, i) => {
    upstreams[`up ${name}`] = upstreamOf([up.address], { retries: 0 });
    routes.push({
      name: `route ${name}`,
      domain: `domain ${name}`,
      match: { path: `/r${i}` },
      upstream: `up ${name}`,
      mirror: { upstream: 'shadow' },
      filters: [
        {
          name: 'rate-limit',
          limits: [{ algorithm: 'token-bucket', key: ['route'], rate: 1000, burst: 3 }],
          redis: { url: redis.url, prefix: `promtool-${i}:` },
        },
        { name: 'circuit-breaker', window: 2000, minimumRequests: 2, failureRate: 50, openTime: 300 },
      ],
    });
  });
  const dir = mkdtempSync(join(tmpdir(), 'obs-review-'));
  const gw = await startTestGateway(
    gatewayConfig(upstreams, routes, {
      listeners: [{ address: '127.0.0.1:0', loops: 2 }],
      admin: { address: '127.0.0.1:0', token: TOKEN },
      http: { accessLog: true },
      observability: { tracing: { endpoint, batch: { maxDelay: 20 } } },
    }),
    { log: { sink: { type: 'file', path: join(dir, 'access.log') }, compression: 'none' } },
  );
  t.after(() => gw.stop());
  for (let i = 0; i < ODD.length; i++)
    for (const p of ['/ok', '/fail', '/ok', '/fail', '/ok', '/ok']) await send(gw.port, `/r${i}${p}`);
  await send(gw.port, '/nowhere');
  await sleep(1200); // the loops' gauges, the span export
  const r = await send(gw.gateway.admin!.port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200);
  const check = promtool(r.text);
  assert.equal(check.status, 0, check.output);
  const m = parseExposition(r.text);
  for (const name of ODD) {
    const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
    const key = `netloom_gateway_requests_total{route="${esc(`route ${name}`)}",domain="${esc(`domain ${name}`)}",upstream="${esc(`up ${name}`)}",status="2xx"}`;
    assert.ok((m.get(key) ?? 0) >= 1, `no 2xx count for ${JSON.stringify(name)}`);
  }
  for (const family of [
    'netloom_gateway_mirror_requests_total',
    'netloom_gateway_circuit_transitions_total',
    'netloom_gateway_rate_limit_redis_calls_total',
    'netloom_gateway_traced_requests_total',
    'netloom_log_records_total',
  ])
    assert.match(r.text, new RegExp(`^# TYPE ${family} `, 'm'), family);
});
