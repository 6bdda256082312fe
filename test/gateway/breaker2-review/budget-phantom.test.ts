// Review (breaker2-review): the retry budget is charged in failAttempt before a target to retry on is
// picked. When none is left (every target tried, or a single-target upstream), nothing is sent again, yet
// the budget counted a retry: with retries: 2 over two targets each request spends two and sends one, so a
// budget of 4 lets 2 through. And once it is spent the record says `retryDenied` for a request that had
// nothing to retry on.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { records as seen } from '../fixtures/governance-filters.ts';
import { deadAddress, gatewayConfig, send, startTestGateway, upstreamOf } from '../support.ts';

const PLUGIN = new URL('../fixtures/governance-filters.ts', import.meta.url);

// 0.4/s over 10 s: 4 retries in the window, whatever the traffic.
const BUDGET = { percent: 0, minPerSecond: 0.4, window: 10_000 };

async function run(targets: string[], retries: number, requests: number) {
  const gw = await startTestGateway(
    gatewayConfig(
      {
        up: upstreamOf(targets, { retries, retryBudget: BUDGET, passive: { consecutiveFailures: 1000 } }),
      },
      [{ name: 'api', match: { path: '/' }, upstream: 'up', filters: [{ name: 'record-keeper' }] }],
    ),
    { plugins: [PLUGIN] },
  );
  try {
    seen.length = 0;
    for (let i = 0; i < requests; i++) assert.equal((await send(gw.port, '/')).status, 502);
    return seen.slice();
  } finally {
    await gw.stop();
  }
}

describe('breaker2-review: retries that are never sent', { timeout: 15_000 }, () => {
  test('a budget of 4 retries lets 4 retries go out (two targets, retries: 2)', async () => {
    const records = await run([await deadAddress(), await deadAddress()], 2, 6);
    const sent = records.reduce((n, r) => n + r.retries, 0);
    assert.equal(sent, 4, `retries sent: ${records.map((r) => r.retries).join(',')}`);
  });

  test('a single-target upstream has no retry to deny', async () => {
    const records = await run([await deadAddress()], 1, 6);
    assert.equal(records.filter((r) => r.retries > 0).length, 0);
    assert.deepEqual(
      records.map((r) => r.retryDenied),
      [false, false, false, false, false, false],
    );
  });
});
