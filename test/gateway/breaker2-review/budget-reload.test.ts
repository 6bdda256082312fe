// Review (breaker2-review): the retry budget lives in the Upstream object, and every reload builds new
// Upstream objects, so any reload (one that does not touch the upstream at all) hands out a fresh budget.
// During an outage with a configuration pushed every few seconds, the bound on retries is lifted.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { records as seen } from '../fixtures/governance-filters.ts';
import { deadAddress, gatewayConfig, send, startTestGateway, upstreamOf } from '../support.ts';

const PLUGIN = new URL('../fixtures/governance-filters.ts', import.meta.url);

describe('breaker2-review: the retry budget across a reload', { timeout: 15_000 }, () => {
  test('a reload of another route does not refill the budget', async (t) => {
    const targets = [await deadAddress(), await deadAddress()];
    const config = (extraRoute: boolean) =>
      gatewayConfig(
        {
          up: upstreamOf(targets, {
            retries: 1,
            // One retry in the 10 s window.
            retryBudget: { percent: 0, minPerSecond: 0.1, window: 10_000 },
            passive: { consecutiveFailures: 1000 },
          }),
        },
        [
          { name: 'api', match: { path: '/' }, upstream: 'up', filters: [{ name: 'record-keeper' }] },
          ...(extraRoute ? [{ name: 'other', match: { path: '/other' }, upstream: 'up' }] : []),
        ],
      );
    const gw = await startTestGateway(config(false), { plugins: [PLUGIN] });
    t.after(() => gw.stop());
    seen.length = 0;
    assert.equal((await send(gw.port, '/')).status, 502);
    assert.equal((await send(gw.port, '/')).status, 502);
    assert.deepEqual(
      seen.map((r) => [r.retries, r.retryDenied]),
      [
        [1, false],
        [0, true],
      ],
    );
    gw.source.set(config(true));
    assert.equal((await gw.gateway.reload()).ok, true);
    assert.equal((await send(gw.port, '/')).status, 502);
    assert.deepEqual([seen[2]!.retries, seen[2]!.retryDenied], [0, true], 'the budget is still spent');
  });
});
