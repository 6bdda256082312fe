// Review (breaker2-review): configuration checks of the change.
// - A breaker's fallback naming a missing upstream is only looked for when the rest of the configuration
//   parses: with any other problem (here a bad `http`), it is not among the problems, and shows up only
//   after that one is fixed, although the filters' own settings are checked on that path.
// - `retryBudget: true` (a natural guess, since `false` lifts the bound) gets zod's bare "Invalid input",
//   which says neither that `true` is not accepted nor what is.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateConfig } from 'netloom/gateway';
import { gatewayConfig, upstreamOf } from '../support.ts';

function problems(config: Record<string, unknown>): string[] {
  try {
    validateConfig(config);
  } catch (e) {
    return (e as { problems: string[] }).problems;
  }
  assert.fail('accepted');
}

describe('breaker2-review: configuration checks', () => {
  test('a missing fallback upstream is reported with the other problems', () => {
    const found = problems(
      gatewayConfig(
        { up: upstreamOf(['127.0.0.1:1']) },
        [
          {
            name: 'r',
            match: { path: '/' },
            upstream: 'up',
            filters: [{ name: 'circuit-breaker', fallback: { upstream: 'nope' } }],
          },
        ],
        { http: 5 },
      ),
    );
    assert.match(found.join('\n'), /^http: /m);
    assert.match(found.join('\n'), /routes\.0\.filters\.0\.fallback\.upstream: no upstream named "nope"/);
  });

  test('retryBudget: true is refused with a message that says what is accepted', () => {
    const found = problems(
      gatewayConfig({ up: upstreamOf(['127.0.0.1:1'], { retryBudget: true }) }, [
        { name: 'r', match: { path: '/' }, upstream: 'up' },
      ]),
    );
    assert.equal(found.length, 1);
    assert.notEqual(found[0], 'upstreams.up.retryBudget: Invalid input');
  });
});
