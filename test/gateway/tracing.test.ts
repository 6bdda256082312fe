// OpenTelemetry traces (issue 16): spans of proxied requests exported over OTLP/HTTP (JSON) to an endpoint
// the test starts, joined to the traceparent the gateway propagates; parent-based ratio sampling; a
// collector that is down costs the requests nothing and its spans are counted dropped.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { describe, test } from 'node:test';
import { ConfigError, validateConfig } from 'netloom/gateway';
import { parseExposition } from '../fixtures/prometheus.ts';
import {
  deadAddress,
  type Echo,
  echoed,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  send,
  sendJson,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: { stringValue?: string; intValue?: string } }[];
  status: { code?: number };
  events?: { name: string; timeUnixNano: string }[];
}

/** An OTLP/HTTP receiver: every span of every export, and the resource of the last. */
async function collector() {
  const spans: OtlpSpan[] = [];
  const exports: { path: string; type: string; resource: unknown }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', () => {
      const json = JSON.parse(body) as {
        resourceSpans: { resource: unknown; scopeSpans: { spans: OtlpSpan[] }[] }[];
      };
      for (const rs of json.resourceSpans) {
        exports.push({
          path: req.url ?? '',
          type: String(req.headers['content-type']),
          resource: rs.resource,
        });
        for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    spans,
    exports,
    endpoint: `http://127.0.0.1:${port}/v1/traces`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes.find((a) => a.key === key)?.value;
  return v?.stringValue ?? (v?.intValue === undefined ? undefined : Number(v.intValue));
};

function traced(
  upstreams: Record<string, Record<string, unknown>>,
  endpoint: string,
  tracing: Record<string, unknown> = {},
) {
  return gatewayConfig(
    upstreams,
    [
      { name: 'api', match: { path: '/' }, upstream: Object.keys(upstreams)[0] },
      ...(upstreams.down === undefined ? [] : [{ name: 'down', match: { path: '/down' }, upstream: 'down' }]),
    ],
    {
      admin: { address: '127.0.0.1:0', token: 'tracing-admin-token-0123456789' },
      observability: { tracing: { endpoint, batch: { maxDelay: 50 }, ...tracing } },
    },
  );
}

describe('tracing over OTLP/HTTP', () => {
  test('a proxied request: a server span under the client, a client span under it, as the upstream saw', async (t) => {
    const otlp = await collector();
    const up = await httpUpstream(echoHandler('up'));
    const dead = await deadAddress();
    t.after(() => Promise.all([otlp.close(), up.close()]));
    const gw = await startTestGateway(
      traced({ app: upstreamOf([up.address]), down: upstreamOf([dead], { retries: 0 }) }, otlp.endpoint, {
        serviceName: 'edge-1',
      }),
    );
    t.after(() => gw.stop());
    const parent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const r = await sendJson<Echo>(gw.port, '/items?x=1', { headers: { traceparent: parent } });
    assert.equal(r.status, 200);
    const sent = echoed(r.json, 'traceparent')!;
    await waitUntil(() => otlp.spans.length >= 2, 3000, 'two spans');
    const server = otlp.spans.find((s) => s.kind === 2)!;
    const client = otlp.spans.find((s) => s.kind === 3)!;
    assert.equal(server.traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.equal(server.parentSpanId, 'b7ad6b7169203331', "the server span is the client's span's child");
    assert.equal(client.traceId, server.traceId);
    assert.equal(client.parentSpanId, server.spanId);
    assert.equal(
      sent,
      `00-${server.traceId}-${client.spanId}-01`,
      'the upstream saw the client span as its parent',
    );
    assert.notEqual(server.spanId, client.spanId);
    assert.match(server.spanId, /^[0-9a-f]{16}$/);
    assert.equal(server.name, 'GET api');
    assert.equal(attr(server, 'http.response.status_code'), 200);
    assert.equal(attr(server, 'http.route'), 'api');
    assert.equal(attr(server, 'url.path'), '/items');
    assert.equal(attr(client, 'server.address'), '127.0.0.1');
    assert.equal(attr(client, 'server.port'), up.port);
    assert.equal(attr(client, 'netloom.upstream'), 'app');
    const [s0, s1, c0, c1] = [
      server.startTimeUnixNano,
      server.endTimeUnixNano,
      client.startTimeUnixNano,
      client.endTimeUnixNano,
    ].map(BigInt);
    assert.ok(s0! <= c0! && c0! <= c1! && c1! <= s1!, 'the client span lies within the server span');
    assert.ok(s1! - s0! < 2_000_000_000n, 'durations in nanoseconds');
    const now = BigInt(Date.now()) * 1_000_000n;
    assert.ok(now - s0! < 60_000_000_000n && s0! <= now, 'times since the epoch');
    assert.equal(client.events?.[0]?.name, 'first byte');
    assert.equal(otlp.exports[0]!.path, '/v1/traces');
    assert.equal(otlp.exports[0]!.type, 'application/json');
    assert.deepEqual(
      (
        otlp.exports[0]!.resource as { attributes: { key: string; value: { stringValue: string } }[] }
      ).attributes.find((a) => a.key === 'service.name')?.value.stringValue,
      'edge-1',
    );

    // A failure: the server span is an error, and so is the client span.
    otlp.spans.length = 0;
    assert.equal((await send(gw.port, '/down')).status, 502);
    await waitUntil(() => otlp.spans.length >= 2, 3000, 'the failure spans');
    const failed = otlp.spans.find((s) => s.kind === 2)!;
    assert.equal(failed.status.code, 2);
    assert.equal(attr(failed, 'error.type'), 'connect-failed');
    assert.equal(otlp.spans.find((s) => s.kind === 3)!.status.code, 2);
    assert.equal(failed.parentSpanId, undefined, 'a root span: the client sent no traceparent');
  });

  test('sampling is parent-based; new traces follow the ratio, and the upstream is told the decision', async (t) => {
    const otlp = await collector();
    const up = await httpUpstream(echoHandler('up'));
    t.after(() => Promise.all([otlp.close(), up.close()]));
    const gw = await startTestGateway(
      traced({ app: upstreamOf([up.address]) }, otlp.endpoint, { sampleRatio: 0.25 }),
    );
    t.after(() => gw.stop());
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    t.after(() => agent.destroy());
    const n = 2000;
    let unsampledFlags = 0;
    for (let i = 0; i < n; i += 100) {
      const replies = await Promise.all(
        Array.from({ length: 100 }, () => sendJson<Echo>(gw.port, '/', { agent })),
      );
      for (const r of replies) if (echoed(r.json, 'traceparent')!.endsWith('-00')) unsampledFlags++;
    }
    // A parent that says sampled is traced; one that says not is not (whatever the ratio).
    await sendJson<Echo>(gw.port, '/', {
      headers: { traceparent: '00-11111111111111111111111111111111-2222222222222222-01' },
    });
    const notSampled = await sendJson<Echo>(gw.port, '/', {
      headers: { traceparent: '00-33333333333333333333333333333333-4444444444444444-00' },
    });
    assert.ok(echoed(notSampled.json, 'traceparent')!.endsWith('-00'), 'the parent flag passes on');
    await sleep(300);
    await waitUntil(() => otlp.spans.some((s) => s.traceId === '1'.repeat(32)), 3000, 'the sampled parent');
    const servers = otlp.spans.filter((s) => s.kind === 2);
    assert.ok(!servers.some((s) => s.traceId === '3'.repeat(32)), 'an unsampled parent is not traced');
    const newTraces = servers.filter((s) => s.parentSpanId === undefined).length;
    assert.ok(Math.abs(newTraces / n - 0.25) < 0.05, `sampled ${newTraces} of ${n}`);
    assert.equal(unsampledFlags, n - newTraces, 'the flag sent upstream says whether the trace was sampled');
  });

  test('a collector that is down costs the requests nothing; the spans are counted dropped', async (t) => {
    const up = await httpUpstream((_req, res) => res.end('ok'));
    const dead = await deadAddress();
    t.after(() => up.close());
    const gw = await startTestGateway(
      traced({ app: upstreamOf([up.address]) }, `http://${dead}/v1/traces`, { timeout: 300 }),
    );
    t.after(() => gw.stop());
    const started = performance.now();
    for (let i = 0; i < 30; i++) assert.equal((await send(gw.port, '/')).status, 200);
    assert.ok(performance.now() - started < 3000);
    const token = 'tracing-admin-token-0123456789';
    let parsed = new Map<string, number>();
    await waitUntil(
      async () => {
        const r = await send(gw.gateway.admin!.port, '/metrics', {
          headers: { authorization: `Bearer ${token}` },
        });
        parsed = parseExposition(r.text);
        return (parsed.get('netloom_gateway_traced_requests_total{outcome="dropped"}') ?? 0) >= 30;
      },
      5000,
      'the dropped spans counted',
    );
    assert.equal(parsed.get('netloom_gateway_traced_requests_total{outcome="queued"}'), 30);
    assert.equal(parsed.get('netloom_gateway_traced_requests_total{outcome="exported"}'), 0);
  });

  test('tracing settings are checked, and apply at restart only', async (t) => {
    const base = (tracing: unknown) =>
      gatewayConfig(
        { a: upstreamOf(['127.0.0.1:1']) },
        [{ name: 'r', match: { path: '/' }, upstream: 'a' }],
        {
          observability: { tracing },
        },
      );
    const problems = (tracing: unknown) => {
      try {
        validateConfig(base(tracing));
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.problems.join('\n');
      }
      assert.fail('accepted');
    };
    assert.match(problems({ endpoint: 'not a url' }), /observability\.tracing\.endpoint/);
    assert.match(problems({ endpoint: 'ftp://x/v1/traces' }), /http:\/\/ or https:\/\//);
    assert.match(problems({ endpoint: 'http://x/v1/traces', sampleRatio: 2 }), /sampleRatio/);
    assert.match(problems({ endpoint: 'http://x/v1/traces', queueBytes: 100_000 }), /power of two/);
    assert.match(problems({ endpoint: 'http://x/v1/traces', extra: 1 }), /observability\.tracing/);
    const otlp = await collector();
    const up = await httpUpstream((_req, res) => res.end('ok'));
    t.after(() => Promise.all([otlp.close(), up.close()]));
    const config = traced({ app: upstreamOf([up.address]) }, otlp.endpoint);
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    const next = structuredClone(config) as { observability: { tracing: { sampleRatio?: number } } };
    next.observability.tracing.sampleRatio = 0;
    await gw.source.set(next);
    const result = await gw.gateway.reload();
    assert.ok(result.ok && result.restartRequired.includes('observability'), JSON.stringify(result));
    await send(gw.port, '/');
    await waitUntil(() => otlp.spans.length >= 1, 3000, 'spans still exported at the ratio in force');
  });
});
