// Review of the gateway metrics: MetricsWriter.series throws a TypeError for a label value holding NUL (its
// key separator), and the gateway passes configuration names to it unchecked. The configuration accepts
// any non-empty string as a route or upstream name, so a name with "\u0000" (valid JSON) passes validation
// and then makes every loop fail to boot (a route's series at build; an upstream's pool gauges at the
// loop's first publish): the gateway does not start, with a metrics error instead of a configuration one.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateConfig } from 'netloom/gateway';
import { gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf } from '../support.ts';

async function refusedOrRuns(config: Record<string, unknown>, t: { after: (fn: () => unknown) => void }) {
  try {
    validateConfig(config, 'inline');
  } catch {
    return; // refused as a configuration error: fine
  }
  let gw: Awaited<ReturnType<typeof startTestGateway>> | null = null;
  let error: unknown = null;
  try {
    gw = await startTestGateway(config);
  } catch (err) {
    error = err;
  }
  t.after(() => gw?.stop());
  assert.equal(error, null, `validated, then failed to start: ${String(error)}`);
  assert.equal((await send(gw!.port, '/x')).status, 200);
}

test('a route named with a NUL is refused by validation, or runs', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  await refusedOrRuns(
    gatewayConfig({ app: upstreamOf([up.address]) }, [
      { name: 'a\u0000b', match: { path: '/' }, upstream: 'app' },
    ]),
    t,
  );
});

test('an upstream named with a NUL is refused by validation, or runs', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  await refusedOrRuns(
    gatewayConfig({ 'a\u0000b': upstreamOf([up.address]) }, [
      { name: 'r', match: { path: '/' }, upstream: 'a\u0000b' },
    ]),
    t,
  );
});
