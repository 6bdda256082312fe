// Review (gov-review): the places in flight of `concurrency` come back on every way a request can end, and
// counts hold across 2 loops. (Expected to pass: these are the paths checked that work.)
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { describe, test } from 'node:test';
import {
  deadAddress,
  gatewayConfig,
  httpUpstream,
  namedUpstream,
  pipelinedReplies,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from '../support.ts';

const cc = (extra: Record<string, unknown> = {}) => ({
  name: 'rate-limit',
  concurrency: { max: 1, ...extra },
});

describe('gov-review: concurrency places come back', { timeout: 40_000 }, () => {
  test('client abort, upstream timeout, connect failure with retry, HTTP/2 cancel, later filter answering, reload', async (t) => {
    let hung: http.ServerResponse[] = [];
    const up = await httpUpstream((req, res) => {
      if (req.url?.includes('hang')) hung.push(res);
      else res.end('ok');
    });
    t.after(() => up.close());
    const dead = await deadAddress();
    const routes = (max = 1) => [
      { name: 'abort', match: { path: '/abort' }, upstream: 'up', filters: [cc({ max })] },
      { name: 'hang', match: { path: '/hang' }, upstream: 'slow', filters: [cc({ max })] },
      { name: 'dead', match: { path: '/dead' }, upstream: 'dead', filters: [cc({ max })] },
      {
        name: 'answered',
        match: { path: '/answered' },
        upstream: 'up',
        filters: [cc({ max }), { name: 'respond', status: 204 }],
      },
    ];
    const config = (max = 1) =>
      gatewayConfig(
        {
          up: upstreamOf([up.address]),
          slow: upstreamOf([up.address], { timeouts: { firstByte: 300, total: 1000 } }),
          dead: upstreamOf([dead, up.address], { retries: 1 }),
        },
        routes(max),
      );
    const gw = await startTestGateway(config());
    t.after(() => gw.stop());

    // The client leaves while the upstream holds the request: the place comes back.
    const sock = net.connect(gw.port, '127.0.0.1');
    sock.on('error', () => {});
    sock.write('GET /abort/hang HTTP/1.1\r\nhost: t\r\n\r\n');
    await waitUntil(() => hung.length === 1);
    sock.destroy();
    await sleep(100);
    assert.equal((await send(gw.port, '/abort')).status, 200);
    for (const r of hung) r.destroy();
    hung = [];

    // The upstream times out (504): the place comes back.
    assert.equal((await send(gw.port, '/hang')).status, 504);
    for (const r of hung) r.destroy();
    hung = [];
    assert.equal((await send(gw.port, '/hang')).status, 504);
    hung = [];

    // A connect failure retried on the other target: one request, one place.
    for (let i = 0; i < 3; i++) assert.equal((await send(gw.port, '/dead')).status, 200);

    // A later filter answers.
    for (let i = 0; i < 3; i++) assert.equal((await send(gw.port, '/answered')).status, 204);

    // An HTTP/2 stream the client cancels while the upstream holds it.
    const h2 = http2.connect(gw.url);
    t.after(() => h2.close());
    h2.on('error', () => {});
    const s = h2.request({ ':path': '/abort/hang' });
    s.on('error', () => {});
    await waitUntil(() => hung.length === 1);
    s.close(http2.constants.NGHTTP2_CANCEL);
    await sleep(100);
    const status = await new Promise<number>((resolve, reject) => {
      const r = h2.request({ ':path': '/abort' });
      r.on('response', (h) => resolve(Number(h[':status'])));
      r.on('error', reject);
      r.resume();
      r.end();
    });
    assert.equal(status, 200);
    for (const r of hung) r.destroy();
    hung = [];

    // A reload (a new filter instance) while a request is in flight: its place comes back once it ends.
    const held = send(gw.port, '/abort/hang', { headers: { 'x-n': '1' } }).catch(() => null);
    await waitUntil(() => hung.length === 1);
    const next = config(1) as { routes: Record<string, unknown>[] };
    next.routes[0]!.requestHeaders = { add: { 'x-reloaded': '1' } };
    gw.source.set(next);
    const reload = await gw.gateway.reload();
    assert.ok(reload.ok && reload.changed, JSON.stringify(reload));
    assert.equal((await send(gw.port, '/abort')).status, 429, 'still in flight across the reload');
    hung.shift()!.end('late');
    await held;
    await sleep(50);
    assert.equal((await send(gw.port, '/abort')).status, 200);
  });

  test('2 loops: a sliding window of 100 admits exactly 100 of 400 pipelined requests', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const config = gatewayConfig({ up: upstreamOf([up.address]) }, [
      {
        name: 'api',
        match: { path: '/' },
        upstream: 'up',
        filters: [
          {
            name: 'rate-limit',
            limits: [{ algorithm: 'sliding-window', key: ['route'], limit: 100, window: 60_000 }],
          },
        ],
      },
    ]);
    config.listeners = [{ address: '127.0.0.1:0', loops: 2 }];
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    const replies = await pipelinedReplies(gw.port, new Array(400).fill(''), 16, 25);
    assert.equal(replies.filter((r) => r.status === 200).length, 100);
    assert.equal(up.requests, 100);
  });
});
