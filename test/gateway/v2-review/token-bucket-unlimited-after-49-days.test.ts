// Shared token buckets pack the refill time as 32 bits of milliseconds since the gateway started: after
// 2^32 ms (49.7 days) of uptime the stored time wraps, every take sees a 49.7-day gap, refills to full and
// the bucket never limits again. Reproduced by starting the gateway with its clock origin 2^32 ms in the
// past (the main thread's clocks, Date.now and performance.now, shifted back only while startGateway
// allocates the shared memory).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf } from '../support.ts';

const FILTERS = new URL('./filters.ts', import.meta.url);

async function run(t: { after(fn: () => unknown): void }, shiftMs: number) {
  const up = await httpUpstream((_q, s) => s.end('ok'));
  t.after(() => up.close());
  const realNow = Date.now;
  const realPerf = performance.now.bind(performance);
  Date.now = () => realNow() - shiftMs;
  performance.now = () => realPerf() - shiftMs;
  let gw: Awaited<ReturnType<typeof startTestGateway>>;
  try {
    gw = await startTestGateway(
      gatewayConfig({ u: upstreamOf([up.address]) }, [
        {
          name: 'limited',
          match: { path: '/' },
          upstream: 'u',
          filters: [{ name: 'bucket-probe', rate: 1, burst: 3 }],
        },
      ]),
      { plugins: [FILTERS] },
    );
  } finally {
    Date.now = realNow;
    performance.now = realPerf;
  }
  t.after(() => gw.stop());
  const statuses: number[] = [];
  for (let i = 0; i < 10; i++) statuses.push((await send(gw.port, '/')).status);
  return statuses.filter((s) => s === 200).length;
}

test('a bucket of rate 1/s, burst 3 lets 3 of 10 quick requests through: just after start', async (t) => {
  assert.equal(await run(t, 0), 3);
});

test('... and after 49.7 days of uptime', async (t) => {
  assert.equal(await run(t, 2 ** 32 + 60_000), 3);
});
