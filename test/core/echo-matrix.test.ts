// gnet_test.go's matrix: loops {1, 2} x TCP / Unix x write / writev, random payloads up to 1 MiB sent in
// random chunks; every echo must be byte-exact and every connection must be accounted for afterwards.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { serve } from 'netloom';
import { echoRoundTrip, prng, randomBytes, type Target, unixPath, waitFor } from '../helpers.ts';

const handler = new URL('../fixtures/echo-handler.ts', import.meta.url);
const warnings: string[] = [];
process.on('warning', (w) => warnings.push(String((w as { code?: string }).code)));

describe('echo matrix', () => {
  for (const loops of [1, 2]) {
    for (const transport of ['tcp', 'unix'] as const) {
      for (const mode of ['write', 'writev'] as const) {
        test(`loops=${loops} ${transport} ${mode}`, async () => {
          const path = unixPath();
          const engine = await serve(handler, {
            address: transport === 'unix' ? `unix://${path}` : 'tcp://127.0.0.1:0',
            loops,
            poisonViews: true,
            data: { mode },
          });
          try {
            if (transport === 'unix' && loops === 2) {
              // SO_REUSEPORT does not balance AF_UNIX: the documented fallback is one loop, said once.
              assert.equal(engine.loops, 1);
              assert.ok(warnings.includes('NETLOOM_SINGLE_LOOP'));
            } else {
              assert.equal(engine.loops, loops);
            }
            const target: Target = transport === 'unix' ? { path } : { port: engine.port };
            const rand = prng(loops * 100 + (transport === 'unix' ? 10 : 0) + (mode === 'writev' ? 1 : 0));
            const sizes = [1, 63, 64 * 1024, 1024 * 1024];
            for (let i = 0; i < 6; i++) sizes.push(1 + Math.floor(rand() * 1024 * 1024));
            const payloads = sizes.map((n) => randomBytes(rand, n));
            const echoes = await Promise.all(payloads.map((p, i) => echoRoundTrip(target, p, prng(i + 7))));
            for (let i = 0; i < payloads.length; i++) {
              assert.equal(echoes[i]!.length, payloads[i]!.length, `client ${i} length`);
              assert.ok(echoes[i]!.equals(payloads[i]!), `client ${i} bytes differ`);
            }
            const sent = sizes.reduce((a, b) => a + b, 0);
            // Byte counters are published every few milliseconds; connection counts at once.
            await waitFor(
              () => engine.stats().total.open === 0 && engine.stats().total.bytesOut === sent,
              5000,
              'connections to close and counters to settle',
            );
            const { total } = engine.stats();
            assert.equal(total.accepted, payloads.length);
            assert.equal(total.closed, payloads.length);
            assert.equal(total.bytesIn, sent);
          } finally {
            await engine.stop({ deadline: 1000 });
          }
        });
      }
    }
  }
});
