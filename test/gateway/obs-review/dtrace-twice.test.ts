// Review of observability.dtrace: the main thread bridges gatewayUsdtProbes (for the reload probe) and each
// loop bridges the engine, HTTP/1.1 and gateway probes on its own thread. With loops: 1 the loop runs on
// the main thread, so the gateway's channels get two bridges there: two `netloom` providers, and every
// proxy-start / proxy-attempt / proxy-complete probe fires twice per request.
//
// dtrace-provider builds its stub on Linux; the test counts fires through the stub's probes.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf } from '../support.ts';

interface StubProvider {
  prototype: { addProbe(name: string, ...types: string[]): { fire(args: () => unknown[]): void } };
}

test('with loops: 1, each USDT probe fires once per request', async (t) => {
  const dtrace = createRequire(import.meta.url)('dtrace-provider') as { DTraceProvider: StubProvider };
  const proto = dtrace.DTraceProvider.prototype;
  const original = proto.addProbe;
  const fired = new Map<string, number>();
  proto.addProbe = (name: string) => ({
    fire(args: () => unknown[]) {
      args();
      fired.set(name, (fired.get(name) ?? 0) + 1);
    },
  });
  t.after(() => {
    proto.addProbe = original;
  });
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ app: upstreamOf([up.address]) }, [{ name: 'a', match: { path: '/' }, upstream: 'app' }], {
      observability: { dtrace: true },
    }),
  );
  t.after(() => gw.stop());
  assert.equal((await send(gw.port, '/x')).status, 200);
  assert.deepEqual(
    {
      start: fired.get('proxy-start'),
      attempt: fired.get('proxy-attempt'),
      complete: fired.get('proxy-complete'),
      http1: fired.get('http1-request-start'),
    },
    { start: 1, attempt: 1, complete: 1, http1: 1 },
  );
});
