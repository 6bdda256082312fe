// diagnostics_channel probes (issue 16): the engine's connection open/close, the HTTP/1.1 server's request
// start/finish/abort and the gateway's proxy start/attempt/complete and reload, in order, with what each
// message promises. The gateway runs with loops: 1 here, on the test's thread, so the test can subscribe.
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import net from 'node:net';
import { test } from 'node:test';
import type { ConnCloseMessage, ConnOpenMessage } from 'netloom';
import type {
  ProxyAttemptMessage,
  ProxyCompleteMessage,
  ProxyStartMessage,
  ReloadMessage,
} from 'netloom/gateway';
import type { RequestAbortMessage, RequestStartMessage, ResponseFinishMessage } from 'netloom/http1';
import {
  deadAddress,
  gatewayConfig,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

const NAMES = [
  'netloom:conn:open',
  'netloom:conn:close',
  'netloom:http1:request:start',
  'netloom:http1:response:finish',
  'netloom:http1:request:abort',
  'netloom:gateway:proxy:start',
  'netloom:gateway:proxy:attempt',
  'netloom:gateway:proxy:complete',
  'netloom:gateway:reload',
] as const;

function subscribeAll() {
  const seen: { name: string; message: unknown; detail: string }[] = [];
  const handlers = NAMES.map((name) => {
    const h = (message: unknown) => {
      let detail = '';
      if (name === 'netloom:http1:request:start') detail = (message as RequestStartMessage).request.path;
      if (name === 'netloom:http1:response:finish')
        detail = String((message as ResponseFinishMessage).response.statusCode);
      if (name === 'netloom:http1:request:abort') detail = (message as RequestAbortMessage).error.message;
      if (name === 'netloom:gateway:proxy:start') detail = (message as ProxyStartMessage).route;
      if (name === 'netloom:gateway:proxy:attempt') {
        const m = message as ProxyAttemptMessage;
        detail = `${m.upstream} ${m.attempt}`;
      }
      if (name === 'netloom:gateway:proxy:complete') {
        const r = (message as ProxyCompleteMessage).record;
        detail = `${r.status} ${r.answeredBy} ${r.error ?? ''}`.trim();
      }
      if (name === 'netloom:gateway:reload') detail = String((message as ReloadMessage).result.ok);
      if (name === 'netloom:conn:open') detail = String((message as ConnOpenMessage).conn.id);
      if (name === 'netloom:conn:close') detail = String((message as ConnCloseMessage).conn.id);
      seen.push({ name, message, detail });
    };
    diagnostics.subscribe(name, h);
    return [name, h] as const;
  });
  return {
    seen,
    off: () => {
      for (const [name, h] of handlers) diagnostics.unsubscribe(name, h);
    },
  };
}

test('probes fire in order for a proxied request, a retried one, an aborted one and a reload', async (t) => {
  const up = await httpUpstream((req, res) => {
    if (req.url === '/slow') return; // never answers: the client leaves
    res.end('ok');
  });
  const dead = await deadAddress();
  t.after(() => up.close());
  const config = gatewayConfig(
    {
      app: upstreamOf([up.address]),
      flaky: upstreamOf([dead, up.address], { retries: 1, balance: 'round_robin' }),
    },
    [
      { name: 'retry', match: { path: '/retry' }, upstream: 'flaky' },
      { name: 'app', match: { path: '/' }, upstream: 'app' },
    ],
  );
  const gw = await startTestGateway(config);
  t.after(() => gw.stop());
  const probes = subscribeAll();
  t.after(() => probes.off());

  assert.equal((await send(gw.port, '/hello')).status, 200);
  await waitUntil(() => probes.seen.some((s) => s.name === 'netloom:conn:close'), 2000, 'the close');
  const gatewaySide = probes.seen.filter((s) => !s.name.startsWith('netloom:conn'));
  assert.deepEqual(
    gatewaySide.map((s) => `${s.name} ${s.detail}`),
    [
      'netloom:http1:request:start /hello',
      'netloom:gateway:proxy:start app',
      'netloom:gateway:proxy:attempt app 1',
      // The response ends (the exchange is over), then the call completes with its record.
      'netloom:http1:response:finish 200',
      'netloom:gateway:proxy:complete 200 upstream',
    ],
  );
  // The client's connection and the pooled upstream one opened; the client's closed.
  assert.ok(probes.seen.filter((s) => s.name === 'netloom:conn:open').length >= 2);

  // A retried GET: two attempts, one completion.
  probes.seen.length = 0;
  for (let i = 0; i < 2; i++) assert.equal((await send(gw.port, '/retry')).status, 200);
  const attempts = probes.seen.filter((s) => s.name === 'netloom:gateway:proxy:attempt').map((s) => s.detail);
  assert.ok(attempts.includes('flaky 2'), `attempts ${attempts}`);
  assert.equal(probes.seen.filter((s) => s.name === 'netloom:gateway:proxy:complete').length, 2);

  // The client leaves mid-request: abort, and a completion saying so; no finish.
  probes.seen.length = 0;
  const s = net.connect(gw.port, '127.0.0.1');
  s.on('error', () => {});
  s.write('GET /slow HTTP/1.1\r\nhost: x\r\n\r\n');
  await waitUntil(
    () => probes.seen.some((p) => p.name === 'netloom:gateway:proxy:attempt'),
    2000,
    'the attempt',
  );
  s.destroy();
  await waitUntil(
    () => probes.seen.some((p) => p.name === 'netloom:gateway:proxy:complete'),
    2000,
    'the completion',
  );
  await sleep(50);
  const names = probes.seen.map((p) => p.name);
  assert.ok(names.includes('netloom:http1:request:abort'), names.join(', '));
  assert.ok(!names.includes('netloom:http1:response:finish'));
  assert.equal(
    probes.seen.find((p) => p.name === 'netloom:gateway:proxy:complete')!.detail,
    '0 nobody client-gone',
  );

  // A reload that is refused, then one that applies.
  probes.seen.length = 0;
  await gw.source.set({ ...config, routes: [{ name: 'x', match: { path: '/' }, upstream: 'missing' }] });
  await gw.gateway.reload();
  await gw.source.set(config);
  await gw.gateway.reload();
  assert.deepEqual(
    probes.seen.filter((p) => p.name === 'netloom:gateway:reload').map((p) => p.detail),
    ['false', 'true'],
  );
});

test('nobody subscribed: nothing is published (hasSubscribers is false on every channel)', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ app: upstreamOf([up.address]) }, [{ name: 'a', match: { path: '/' }, upstream: 'app' }]),
  );
  t.after(() => gw.stop());
  assert.equal((await send(gw.port, '/')).status, 200);
  for (const name of NAMES) assert.equal(diagnostics.channel(name).hasSubscribers, false, name);
});
