import assert from 'node:assert/strict';
import { test } from 'node:test';
import { send, sleep, startTestGateway, waitUntil } from '../support.ts';
import { h2RawRequest, h2Shadow, mirrored, recordingShadow } from './helpers.ts';

// An HTTP/2 client's trailer value may hold a control character (RFC 9113 forbids only NUL, CR and LF; the
// gateway's HTTP/2 side takes it). The HTTP/1.1 codec refuses it in `endBody` after it has cleared its
// chunked flag, so MirrorExchange's fallback `client.endBody()` writes nothing: the shadow's chunked body is
// never terminated. (The live upstream here is HTTP/2, whose codec drops such trailers and ends the body.)
const head: [string, string][] = [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':path', '/t'],
  [':authority', 'gw.test'],
];
const trailers: [string, string][] = [['x-check', 'a\u0001b']];

async function liveH2() {
  return h2Shadow((stream) => {
    stream.on('data', () => {});
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-length': '4' });
      stream.end('live');
    });
  });
}

test('a trailer the HTTP/1.1 codec refuses still ends the mirror’s chunked body', async (t) => {
  const main = await liveH2();
  const shadow = await recordingShadow();
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(
    mirrored(
      main.address,
      shadow.address,
      {},
      {},
      { timeouts: { total: 3000, firstByte: 1000 } },
      { protocol: 'http2' },
    ),
  );
  t.after(() => gw.stop());
  assert.ok(
    await h2RawRequest(gw.port, head, Buffer.from('hello'), trailers),
    'the live request is answered',
  );
  await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 4000, 'the mirror settles');
  assert.equal(shadow.seen.length, 1);
  assert.ok(shadow.seen[0]!.complete, 'the shadow got the whole body (its last chunk)');
  assert.deepEqual(
    gw.gateway.mirrorStats().app,
    { started: 1, answered: 1, failed: 0, aborted: 0, skipped: 0, inFlight: 0 },
    'answered, not failed at the shadow’s first-byte timeout (and the shadow blamed)',
  );
});

test('a shadow answering at once does not get the unterminated connection back for the next mirror', async (t) => {
  const main = await liveH2();
  // Answers on the head, without waiting for the body: the mirror is past its body (SENT), so the
  // connection is thought clean and goes back to the pool with its chunked body open.
  const shadow = await recordingShadow((_req, res) => {
    res.writeHead(200, { 'content-length': '2' });
    res.end('ok');
    return true;
  });
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(
    mirrored(main.address, shadow.address, {}, {}, {}, { protocol: 'http2' }),
  );
  t.after(() => gw.stop());
  assert.ok(
    await h2RawRequest(gw.port, head, Buffer.from('hello'), trailers),
    'the live request is answered',
  );
  await waitUntil(() => gw.gateway.mirrorStats().app?.answered === 1, 3000, 'the first mirror');
  await sleep(50);
  assert.equal((await send(gw.port, '/next')).status, 200);
  await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'the second mirror settles');
  await sleep(100);
  assert.deepEqual(
    shadow.seen.map((s) => s.url),
    ['/t', '/next'],
    `the next mirror is read as a request (stats ${JSON.stringify(gw.gateway.mirrorStats().app)})`,
  );
});
