// Review of the fault filter over HTTP/2 (h2c by prior knowledge): streams reset while held, bodiless aborts.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { describe, test } from 'node:test';
import { gatewayConfig, namedUpstream, sleep, startTestGateway, upstreamOf } from '../support.ts';

function h2(port: number, path: string, method = 'GET') {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  const req = session.request({ ':path': path, ':method': method });
  req.on('error', () => {});
  const done = new Promise<{ status: number; body: string }>((resolve) => {
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (d: Buffer) => (body += d));
    req.on('close', () => resolve({ status, body }));
  });
  req.end();
  return { session, req, done };
}

describe('fault over HTTP/2 review', { timeout: 30_000 }, () => {
  test('a stream reset while held sends nothing up; the session goes on', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address]) }, [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'up',
          filters: [{ name: 'fault', delay: { ms: 300 } }],
        },
      ]),
    );
    t.after(() => gw.stop());
    const a = h2(gw.port, '/');
    await sleep(30);
    a.req.close(http2.constants.NGHTTP2_CANCEL);
    await sleep(500);
    assert.equal(up.requests, 0);
    const b = a.session.request({ ':path': '/' });
    let status = 0;
    b.on('response', (h) => (status = Number(h[':status'])));
    b.resume();
    await new Promise((r) => b.on('close', r));
    assert.equal(status, 200);
    a.session.close();
  });

  test('abort 204 and HEAD over HTTP/2 carry no body', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address]) }, [
        {
          name: 'a',
          match: { path: '/nc' },
          upstream: 'up',
          filters: [{ name: 'fault', abort: { status: 204, body: 'xx' } }],
        },
        {
          name: 'b',
          match: { path: '/' },
          upstream: 'up',
          filters: [{ name: 'fault', abort: { status: 503 } }],
        },
      ]),
    );
    t.after(() => gw.stop());
    const a = h2(gw.port, '/nc');
    const ra = await a.done;
    a.session.close();
    assert.deepEqual(ra, { status: 204, body: '' });
    const b = h2(gw.port, '/', 'HEAD');
    const rb = await b.done;
    b.session.close();
    assert.deepEqual(rb, { status: 503, body: '' });
  });
});
