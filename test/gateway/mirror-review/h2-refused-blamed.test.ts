// The live path sends a stream an HTTP/2 upstream refused (ERR_HTTP2_REFUSED: GOAWAY below it, or
// REFUSED_STREAM) again on another connection and blames nobody (ProxyCall.onError; against this same
// upstream the live request gets its 200 on a second connection). MirrorExchange.onError resends only on a
// reused connection; on a fresh one the refusal is counted as the shadow's failure ('upstream-closed',
// which also feeds its passive health).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, rawH2Upstream, T } from '../h2-review/helpers.ts';
import { echoHandler, httpUpstream, send, sleep, startTestGateway, waitUntil } from '../support.ts';
import { mirrored } from './helpers.ts';

test('a stream an HTTP/2 shadow refused (GOAWAY below it) is sent again, as the live path does', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  // The first connection goes away before its first stream (GOAWAY, last-stream-id 0: none processed);
  // later connections answer.
  const shadow = await rawH2Upstream((c, f) => {
    if (f.type !== T.HEADERS) return;
    if (c.index === 0) c.send(frame(T.GOAWAY, 0, 0, Buffer.alloc(8)));
    else c.headers(f.stream, [[':status', '200']], true);
  });
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(
    mirrored(main.address, `127.0.0.1:${shadow.port}`, {}, {}, { protocol: 'http2' }),
  );
  t.after(() => gw.stop());
  assert.equal((await send(gw.port, '/x')).status, 200);
  await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'the mirror settles');
  await sleep(50);
  const stats = gw.gateway.mirrorStats().app!;
  assert.deepEqual(
    { answered: stats.answered, failed: stats.failed, connections: shadow.conns.length },
    { answered: 1, failed: 0, connections: 2 },
    'a refused stream was never processed: safe to send again',
  );
});
