// A reload that one loop refuses is rolled back everywhere, yet the loops that prepared it keep part of it:
// GatewayRuntime.build (the prepare) calls TargetRegistry.target(), which writes the new weight and pool
// options into the live targets shared with the version in force. After the abort, /config shows the old
// pool (maxConnections 1, maxQueue 0) while loop 0:0 enforces the new one (maxConnections 50).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FILTERS } from '../fixtures/test-harness.ts';
import { httpUpstream, send, startTestGateway } from '../support.ts';

function config(maxConnections: number, failOn: string[]) {
  return {
    listeners: [
      { address: '127.0.0.1:0', loops: 1 },
      { address: '127.0.0.1:0', loops: 1 },
    ],
    upstreams: { u: { targets: [{ address: ADDRESS }], pool: { maxConnections, maxQueue: 0 } } },
    routes: [
      {
        name: 'r',
        match: { path: '/' },
        upstream: 'u',
        filters: failOn.length > 0 ? [{ name: 'fail-create', loops: failOn }] : [],
      },
    ],
  };
}
let ADDRESS = '';

async function twoAtOnce(port: number): Promise<number[]> {
  return (await Promise.all([send(port, '/a'), send(port, '/b')])).map((r) => r.status).sort();
}

test('a rolled-back reload leaves no part of itself in force on the loops that prepared it', async (t) => {
  const up = await httpUpstream((_q, s) => setTimeout(() => s.end('ok'), 300));
  t.after(() => up.close());
  ADDRESS = up.address;
  const gw = await startTestGateway(config(1, []), { plugins: [FILTERS] });
  t.after(() => gw.stop());
  const before = await twoAtOnce(gw.gateway.port(0)); // loop 0:0
  gw.source.set(config(50, ['1:0'])); // loop 1:0 cannot build it: rolled back
  const result = await gw.gateway.reload();
  assert.equal(result.ok, false);
  const after = await twoAtOnce(gw.gateway.port(0));
  assert.deepEqual(
    { before, after, configShows: gw.gateway.config.upstreams.u!.pool.maxConnections },
    { before: [200, 503], after: [200, 503], configShows: 1 },
  );
});
