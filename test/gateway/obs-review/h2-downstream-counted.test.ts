// Review of the gateway metrics: requests from HTTP/2 clients (h2c by prior knowledge) are counted like
// HTTP/1.1 ones: by route and status class, a filter's answer included, no-route refusals, body bytes, and
// one duration observation each.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test } from 'node:test';
import { parseExposition } from '../../fixtures/prometheus.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'obs-review-admin-token-0123456789';

function h2get(session: http2.ClientHttp2Session, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': path });
    let status = 0;
    req.on('response', (h) => {
      status = Number(h[':status']);
    });
    req.resume();
    req.on('end', () => resolve(status));
    req.on('error', reject);
    req.end();
  });
}

test('HTTP/2 requests are counted by route, status class and bytes', async (t) => {
  const up = await httpUpstream((_req, res) => {
    res.writeHead(200, { 'content-length': '5' });
    res.end('hello');
  });
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig(
      { app: upstreamOf([up.address]) },
      [
        {
          name: 'down',
          match: { path: '/down' },
          upstream: 'app',
          filters: [{ name: 'respond', status: 503, body: 'down' }],
        },
        { name: 'api', match: { path: '/api' }, upstream: 'app' },
      ],
      { admin: { address: '127.0.0.1:0', token: TOKEN } },
    ),
  );
  t.after(() => gw.stop());
  const session = http2.connect(gw.url);
  t.after(() => session.close());
  const statuses = await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => h2get(session, `/api/${i}`)),
    ...Array.from({ length: 5 }, () => h2get(session, '/down')),
    ...Array.from({ length: 3 }, () => h2get(session, '/nowhere')),
  ]);
  const byStatus: Record<number, number> = {};
  for (const s of statuses) byStatus[s] = (byStatus[s] ?? 0) + 1;
  assert.deepEqual(byStatus, { 200: 20, 503: 5, 404: 3 });
  await sleep(100);
  const r = await send(gw.gateway.admin!.port, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
  const m = parseExposition(r.text);
  assert.equal(
    m.get('netloom_gateway_requests_total{route="api",domain="default",upstream="app",status="2xx"}'),
    20,
  );
  assert.equal(
    m.get('netloom_gateway_requests_total{route="down",domain="default",upstream="app",status="5xx"}'),
    5,
  );
  assert.equal(m.get('netloom_gateway_unrouted_requests_total{reason="no-route"}'), 3);
  assert.equal(m.get('netloom_gateway_request_duration_seconds_count{route="api"}'), 20);
  assert.equal(m.get('netloom_gateway_response_body_bytes_total{route="api"}'), 100);
});
