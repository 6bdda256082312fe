// USDT probes through the optional dtrace-provider (issue 16): `observability.dtrace` makes each loop
// bridge the diagnostics channels to probes. On Linux dtrace-provider's stub loads and fires nothing, and
// the bridge says so (native: false). Every probe's arguments are computed from real messages, with the
// types the probe declares; the subscriptions end with the gateway.
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { test } from 'node:test';
import { bridgeToUsdt, engineUsdtProbes } from 'netloom';
import { gatewayUsdtProbes } from 'netloom/gateway';
import { http1UsdtProbes } from 'netloom/http1';
import { gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf } from './support.ts';

const specs = [...engineUsdtProbes, ...http1UsdtProbes, ...gatewayUsdtProbes];
const channels = [...new Set(specs.map((s) => s.channel))];

test('observability.dtrace bridges every channel while the gateway runs; probe arguments match their types', async (t) => {
  for (const c of channels) assert.equal(diagnostics.channel(c).hasSubscribers, false, c);
  const probe = bridgeToUsdt('netloom_probe_check', []);
  if (process.platform === 'linux')
    assert.equal(probe.native, false, 'dtrace-provider builds a stub on Linux');
  probe.disable();

  const captured = new Map<string, unknown>();
  const keep = channels.map((c) => {
    const listener = (m: unknown) => {
      if (!captured.has(c)) captured.set(c, m);
    };
    return [c, listener] as const;
  });
  const up = await httpUpstream((req, res) => {
    if (req.url === '/hang') return;
    res.end('ok');
  });
  t.after(() => up.close());
  const config = gatewayConfig(
    { app: upstreamOf([up.address]) },
    [{ name: 'a', match: { path: '/' }, upstream: 'app' }],
    {
      observability: { dtrace: true },
    },
  );
  const gw = await startTestGateway(config);
  let stopped = false;
  t.after(() => (stopped ? undefined : gw.stop()));
  for (const c of channels) assert.equal(diagnostics.channel(c).hasSubscribers, true, `${c} bridged`);
  for (const [c, l] of keep) diagnostics.subscribe(c, l);
  try {
    assert.equal((await send(gw.port, '/x')).status, 200);
    const aborted = send(gw.port, '/hang').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
    await gw.stop(50); // cuts the hanging request: an abort
    stopped = true;
    await aborted;
    await gw.gateway.reload(); // refused (stopping), published all the same
  } finally {
    for (const [c, l] of keep) diagnostics.unsubscribe(c, l);
  }
  for (const spec of specs) {
    const m = captured.get(spec.channel);
    assert.ok(m !== undefined, `${spec.channel} published`);
    const args = spec.args(m);
    assert.equal(args.length, spec.types.length, spec.probe);
    for (const [i, a] of args.entries())
      assert.equal(typeof a, spec.types[i] === 'int' ? 'number' : 'string', `${spec.probe} argument ${i}`);
  }
  for (const c of channels)
    assert.equal(diagnostics.channel(c).hasSubscribers, false, `${c} released at stop`);
});
