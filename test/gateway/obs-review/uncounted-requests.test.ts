// Review of the gateway metrics: requests the dispatcher answers itself after (or instead of) routing are
// counted nowhere: neither in netloom_gateway_requests_total (no ProxyCall, so no completion) nor in
// netloom_gateway_unrouted_requests_total (only bad-host, bad-path and no-route are). A scrape's request
// counts then fall short of what clients were answered.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { parseExposition } from '../../fixtures/prometheus.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';

/** Writes `request` on a fresh connection and returns the status of the answer. */
function raw(port: number, request: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n\r\n')) {
        s.destroy();
        resolve(Number(buf.slice(9, 12)));
      }
    });
    s.on('error', reject);
    s.write(request);
  });
}

function sumOf(m: Map<string, number>, prefix: string): number {
  let n = 0;
  for (const [k, v] of m) if (k.startsWith(prefix)) n += v;
  return n;
}

test('every answered request shows in requests_total or unrouted_requests_total', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig(
      { app: upstreamOf([up.address]) },
      [{ name: 'ws', match: { path: '/' }, upstream: 'app', websocket: { enabled: true } }],
      { admin: { address: '127.0.0.1:0', token: TOKEN } },
    ),
  );
  t.after(() => gw.stop());
  const answers = [
    // OPTIONS * (answered 204 by the dispatcher)
    await raw(gw.port, 'OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n'),
    // CONNECT on a route that does not take it (405)
    await raw(gw.port, 'CONNECT 127.0.0.1:1 HTTP/1.1\r\nhost: 127.0.0.1:1\r\n\r\n'),
    // A WebSocket upgrade with a body (400)
    await raw(
      gw.port,
      'GET /chat HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\ncontent-length: 2\r\n\r\nhi',
    ),
  ];
  assert.deepEqual(answers, [204, 405, 400]);
  await sleep(100);
  const r = await send(gw.gateway.admin!.port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  const m = parseExposition(r.text);
  const counted =
    sumOf(m, 'netloom_gateway_requests_total{') + sumOf(m, 'netloom_gateway_unrouted_requests_total{');
  assert.equal(counted, answers.length, 'requests answered by the dispatcher are on /metrics');
});

test("requests the HTTP codec refuses before the gateway's handler (413, 400) are counted", async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig(
      { app: upstreamOf([up.address]) },
      [{ name: 'api', match: { path: '/' }, upstream: 'app' }],
      {
        admin: { address: '127.0.0.1:0', token: TOKEN },
        http: { maxBodySize: 1000 },
      },
    ),
  );
  t.after(() => gw.stop());
  const answers = [
    await raw(gw.port, 'POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n'),
    await raw(gw.port, 'GET /\x01 HTTP/1.1\r\nhost: x\r\n\r\n'),
  ];
  assert.deepEqual(answers, [413, 400]);
  await sleep(100);
  const r = await send(gw.gateway.admin!.port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  const m = parseExposition(r.text);
  const counted =
    sumOf(m, 'netloom_gateway_requests_total{') +
    sumOf(m, 'netloom_gateway_unrouted_requests_total{') +
    // The codec answers these itself, before any handler: counted as the HTTP/1.1 server's own answers.
    sumOf(m, 'netloom_http1_server_answers_total{');
  assert.equal(counted, answers.length, 'refused requests (413, 400) are on /metrics');
});
