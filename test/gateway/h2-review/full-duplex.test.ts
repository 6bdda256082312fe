// An h2 upstream that sends its response HEADERS before the request body has ended (full duplex: gRPC
// bidi streaming, echo servers). Request body bytes the client sends after that head must still reach the
// upstream, and END_STREAM must follow.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { gatewayConfig, startTestGateway } from '../support.ts';
import { h2Upstream, withTimeout } from './helpers.ts';

test('request body after the upstream response head reaches an h2 upstream', async (t) => {
  let received = '';
  let ended = false;
  const up = await h2Upstream((stream) => {
    stream.respond({ ':status': 200 });
    stream.on('data', (d: Buffer) => {
      received += d.toString();
      stream.write(d);
    });
    stream.on('end', () => {
      ended = true;
      stream.end();
    });
  });
  const gw = await startTestGateway(
    gatewayConfig(
      {
        h2: {
          targets: [{ address: `127.0.0.1:${up.port}` }],
          protocol: 'http2',
          timeouts: { firstByte: 5000, total: 5000 },
        },
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'h2' }],
    ),
  );
  t.after(async () => {
    await gw.stop();
    await up.close();
  });
  const result = new Promise<string>((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: gw.port,
      path: '/echo',
      method: 'POST',
      agent: false,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      let sentSecond = false;
      res.on('data', (d: Buffer) => {
        body += d.toString();
        if (!sentSecond && body.includes('first')) {
          sentSecond = true;
          req.end('second');
        }
      });
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.flushHeaders();
    req.write('first');
  });
  let body: string;
  try {
    body = await withTimeout(result, 3000, 'the echoed body');
  } catch (err) {
    assert.fail(`${(err as Error).message}; upstream received ${JSON.stringify(received)}, ended: ${ended}`);
  }
  assert.equal(body, 'firstsecond');
  assert.equal(received, 'firstsecond');
});
