// MirrorExchange.onError sends a mirror again on a fresh connection when its pooled one failed before any
// answer and the request had no body. The live path (ProxyCall.onError) does that only for idempotent
// methods and never for a stream the upstream reset (it saw the request): the mirror's test has neither
// check, so the shadow gets such requests twice.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import {
  echoHandler,
  httpUpstream,
  rawUpstream,
  send,
  sleep,
  startTestGateway,
  waitUntil,
} from '../support.ts';
import { h2Shadow, mirrored } from './helpers.ts';

/** Sends `text` on a fresh connection; resolves with all the gateway sent back until it closed. */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
    });
    s.on('error', reject);
    s.on('close', () => resolve(got));
    s.write(text);
  });
}

test('an HTTP/2 shadow that resets a stream it received gets the request once, not twice', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await h2Shadow((stream, headers) => {
    if (headers[':path'] === '/reset') {
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR); // RST_STREAM: seen, refused to process
      return;
    }
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(mirrored(main.address, shadow.address, {}, {}, { protocol: 'http2' }));
  t.after(() => gw.stop());
  // A first mirror opens the shadow's connection; the second goes on it (reused) and is reset.
  assert.equal((await send(gw.port, '/warm')).status, 200);
  await waitUntil(() => gw.gateway.mirrorStats().app?.answered === 1, 3000, 'the first mirror');
  assert.equal((await send(gw.port, '/reset', { method: 'DELETE' })).status, 200);
  await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'the mirrors settle');
  await sleep(100);
  assert.deepEqual(
    shadow.paths.filter((p) => p === '/reset'),
    ['/reset'],
    `a stream the shadow saw and reset is not sent again (shadow saw ${JSON.stringify(shadow.paths)})`,
  );
  assert.equal(gw.gateway.mirrorStats().app!.failed, 1);
});

test('a POST mirror whose reused shadow connection drops unanswered is not sent a second time', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const seen: string[] = [];
  const served = new WeakSet<net.Socket>();
  // Answers the first request of a connection (keep-alive); takes the second in and drops the connection
  // without an answer (a shadow that crashed processing it): it did see the request.
  const shadow = await rawUpstream((head, _b, s) => {
    seen.push(head.split(' ').slice(0, 2).join(' '));
    if (served.has(s)) {
      s.destroy();
      return;
    }
    served.add(s);
    s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
  });
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(mirrored(main.address, shadow.address));
  t.after(() => gw.stop());
  assert.equal((await send(gw.port, '/warm')).status, 200);
  await waitUntil(() => gw.gateway.mirrorStats().app?.answered === 1, 3000, 'the first mirror');
  // A POST without a body or a length (framing none): the live request is never sent again (not idempotent).
  const live = await rawRequest(gw.port, 'POST /charge HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
  assert.match(live, /^HTTP\/1.1 200/);
  await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'the mirrors settle');
  await sleep(100);
  const charges = seen.filter((s) => s.endsWith('/charge'));
  assert.deepEqual(charges, ['POST /charge'], `the shadow got the POST ${charges.length} times`);
});
