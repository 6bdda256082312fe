// An h2 upstream that answers (END_STREAM) before the request body has ended. The gateway then stops sending
// the body; it must close its half of the stream (END_STREAM or RST_STREAM), or the stream stays open on the
// upstream forever and keeps counting against its SETTINGS_MAX_CONCURRENT_STREAMS.
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import { gatewayConfig, send, sleep, startTestGateway } from '../support.ts';
import { h2Upstream, rawH2Upstream, T } from './helpers.ts';

function earlyAnsweredUpload(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/upload', method: 'POST', agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => {
        // The client goes on with its body after the answer, then ends it.
        req.write('more');
        req.end('last');
        resolve(res.statusCode ?? 0);
      });
    });
    req.flushHeaders();
    req.write('first');
  });
}

test('raw upstream: the gateway ends its side of an early-answered stream', async (t) => {
  const up = await rawH2Upstream((c, f) => {
    if (
      f.type === T.DATA &&
      f.stream === 1 &&
      !c.frames.some((x) => x.type === T.DATA && x !== f && x.stream === 1)
    ) {
      c.headers(1, [[':status', '413']], false);
      c.data(1, Buffer.from('too big'), true);
    }
  });
  const gw = await startTestGateway(
    gatewayConfig({ h2: { targets: [{ address: `127.0.0.1:${up.port}` }], protocol: 'http2' } }, [
      { name: 'all', match: { path: '/' }, upstream: 'h2' },
    ]),
  );
  t.after(async () => {
    await gw.stop();
    await up.close();
  });
  assert.equal(await earlyAnsweredUpload(gw.port), 413);
  await sleep(800);
  const after = up.conns[0]!.frames.filter((f) => f.stream === 1);
  const closedOurSide = after.some((f) => f.type === T.RST_STREAM || (f.flags & 1) !== 0);
  assert.ok(
    closedOurSide,
    `frames on stream 1: ${after.map((f) => `type ${f.type} flags ${f.flags} len ${f.payload.length}`).join('; ')}`,
  );
});

test('node:http2 upstream with maxConcurrentStreams 1: a request after an early-answered upload succeeds', async (t) => {
  const up = await h2Upstream(
    (stream, headers) => {
      if (headers[':path'] === '/upload') {
        stream.once('data', () => {
          stream.respond({ ':status': 413 });
          stream.end('too big');
        });
        return;
      }
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end('ok');
      });
    },
    { settings: { maxConcurrentStreams: 1 } },
  );
  const gw = await startTestGateway(
    gatewayConfig(
      {
        h2: {
          targets: [{ address: `127.0.0.1:${up.port}` }],
          protocol: 'http2',
          pool: { maxConnections: 1 },
        },
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'h2' }],
    ),
  );
  t.after(async () => {
    await gw.stop();
    await up.close();
  });
  // A first request so the upstream's SETTINGS (max 1 stream) are known.
  assert.equal((await send(gw.port, '/warm', { method: 'POST', body: 'x' })).status, 200);
  assert.equal(await earlyAnsweredUpload(gw.port), 413);
  await sleep(300);
  const r = await send(gw.port, '/next', { method: 'POST', body: 'abc' });
  assert.equal(r.status, 200, r.text);
});
