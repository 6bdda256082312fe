// An upstream answering with a transfer coding other than chunked (`Transfer-Encoding: gzip, chunked`): the
// gateway cannot forward it as it came (it re-frames bodies) and must not hand the client coded bytes with
// no marker; like nginx ("upstream sent unknown Transfer-Encoding"), it answers 502.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { gatewayConfig, rawUpstream, send, startTestGateway, upstreamOf } from '../support.ts';

test('Transfer-Encoding: gzip, chunked from an upstream is a 502, not unmarked gzip bytes', async (t) => {
  const gz = gzipSync(Buffer.from('hello'));
  const up = await rawUpstream((_head, _body, socket) => {
    socket.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n${gz.length.toString(16)}\r\n`);
    socket.write(gz);
    socket.write('\r\n0\r\n\r\n');
  });
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address], { retries: 0 }) }, [
      { name: 'all', match: { path: '/' }, upstream: 'u' },
    ]),
  );
  t.after(() => gw.stop());
  const r = await send(gw.port, '/');
  assert.equal(r.status, 502, `got ${r.status} with ${r.body.length} bytes: ${JSON.stringify(r.headers)}`);
});
