// Review of tracing with mirrors: the mirror's head is made with the live request's traceparent, so the
// shadow upstream is told its parent is the live request's client span. With tracing on, the shadow
// service's server span is attached under the span of the live upstream exchange (two exchanges, two
// services, one client span), and the trace shows shadow traffic as part of the live request. The span id
// in a traceparent names one outgoing request (W3C parent-id): the copy needs its own.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf, waitUntil } from '../support.ts';

test('the mirror of a traced request does not reuse the live exchange span id', async (t) => {
  const seen: { who: string; traceparent: string }[] = [];
  const recorder = (who: string) =>
    httpUpstream((req, res) => {
      seen.push({ who, traceparent: String(req.headers.traceparent) });
      res.end(who);
    });
  const main = await recorder('main');
  const shadow = await recorder('shadow');
  const otlp = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end('{}'));
  });
  await new Promise<void>((resolve) => otlp.listen(0, '127.0.0.1', resolve));
  t.after(() =>
    Promise.all([main.close(), shadow.close(), new Promise<void>((resolve) => otlp.close(() => resolve()))]),
  );
  const endpoint = `http://127.0.0.1:${(otlp.address() as net.AddressInfo).port}/v1/traces`;
  const gw = await startTestGateway(
    gatewayConfig(
      { main: upstreamOf([main.address]), shadow: upstreamOf([shadow.address]) },
      [{ name: 'app', match: { path: '/' }, upstream: 'main', mirror: { upstream: 'shadow' } }],
      { observability: { tracing: { endpoint } } },
    ),
  );
  t.after(() => gw.stop());
  assert.equal((await send(gw.port, '/x')).status, 200);
  await waitUntil(() => seen.length === 2, 3000, 'the live request and its mirror');
  const live = seen.find((s) => s.who === 'main')!.traceparent;
  const copy = seen.find((s) => s.who === 'shadow')!.traceparent;
  assert.equal(copy.slice(3, 35), live.slice(3, 35), 'the same trace');
  assert.notEqual(
    copy.slice(36, 52),
    live.slice(36, 52),
    'the shadow is told the live client span is its parent',
  );
});
