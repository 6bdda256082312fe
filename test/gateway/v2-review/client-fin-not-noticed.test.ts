// A client that gives up on a request by closing its connection normally (FIN: socket.end()/destroy(), what
// browsers, curl ^C and node's req.destroy() send) is not noticed while the request waits: the filters'
// AbortSignal never fires, the upstream request keeps its pooled connection until the first-byte timeout
// (30 s by default), and the call ends as 'upstream-timeout' (a passive-health failure of the target),
// onError filters running for a client long gone. Only an RST is noticed. node:http, nginx and Envoy all
// treat the FIN as the client going away.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { Reports } from '../fixtures/test-harness.ts';
import { gatewayConfig, httpUpstream, sleep, startTestGateway, upstreamOf, waitUntil } from '../support.ts';

const FILTERS = new URL('./filters.ts', import.meta.url);

test('a client closing its connection (FIN) mid-request aborts the signal and the upstream request', async (t) => {
  let upstreamSawClose = false;
  const up = await httpUpstream((req, res) => {
    req.socket.on('close', () => {
      upstreamSawClose = true;
    });
    setTimeout(() => {
      if (!res.destroyed) res.end('late');
    }, 2500);
  });
  t.after(() => up.close());
  const reports = new Reports();
  t.after(() => reports.close());
  const gw = await startTestGateway(
    gatewayConfig({ u: upstreamOf([up.address], { timeouts: { firstByte: 2000, total: 3000 } }) }, [
      {
        name: 'r',
        match: { path: '/' },
        upstream: 'u',
        filters: [{ name: 'records', channel: reports.name }],
      },
    ]),
    { plugins: [FILTERS] },
  );
  t.after(() => gw.stop());
  const s = net.connect(gw.port, '127.0.0.1');
  s.on('error', () => {});
  s.write('GET /slow HTTP/1.1\r\nHost: gw.test\r\n\r\n');
  await waitUntil(() => up.requests === 1, 2000, 'the upstream request');
  s.destroy(); // FIN
  await sleep(1000);
  const got = {
    signalAborted: reports.of('abort').length === 1,
    upstreamRequestCancelled: upstreamSawClose,
  };
  await waitUntil(() => reports.of('complete').length === 1, 3000, 'the record');
  const record = reports.of('complete')[0]!.record as { error: string };
  assert.deepEqual(
    { ...got, error: record.error, onErrorRan: reports.of('error').length },
    { signalAborted: true, upstreamRequestCancelled: true, error: 'client-gone', onErrorRan: 0 },
  );
});
