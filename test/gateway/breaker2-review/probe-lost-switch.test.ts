// Review (breaker2-review): a `scope: upstream` breaker picks its circuit by `ctx.upstreamName` in
// onRequest and again in onComplete. A filter after it that calls useUpstream moves the request to another
// upstream in between: the probe taken on the first upstream's circuit is looked for on the second one's,
// dropped, and never given back nor counted. The first circuit stays half-open with its probe slots full:
// every request of every route sharing it gets the 503, though the upstream recovered long ago.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const PLUGIN = new URL('../fixtures/governance-filters.ts', import.meta.url);

describe('breaker2-review: the upstream changes after the breaker took a probe', { timeout: 15_000 }, () => {
  test('the circuit of the first upstream closes again once it recovers', async (t) => {
    const mode = { status: 500 };
    const up = await httpUpstream((_req, res) => res.writeHead(mode.status).end('up'));
    t.after(() => up.close());
    const other = await httpUpstream((_req, res) => res.writeHead(200).end('other'));
    t.after(() => other.close());
    const breaker = {
      name: 'circuit-breaker',
      scope: 'upstream',
      minimumRequests: 4,
      openTime: 300,
      halfOpenRequests: 1,
    };
    const gw = await startTestGateway(
      gatewayConfig(
        {
          up: upstreamOf([up.address], { retries: 0 }),
          other: upstreamOf([other.address], { retries: 0 }),
        },
        [
          {
            name: 'api',
            match: { path: '/' },
            upstream: 'up',
            filters: [breaker, { name: 'switch-on-header' }],
          },
        ],
      ),
      { plugins: [PLUGIN] },
    );
    t.after(() => gw.stop());
    for (let i = 0; i < 4; i++) assert.equal((await send(gw.port, '/')).status, 500);
    assert.equal((await send(gw.port, '/')).status, 503, 'open');
    mode.status = 200;
    await sleep(350);
    // Half-open: this request takes the one probe of `up`'s circuit, then goes to `other`.
    const moved = await send(gw.port, '/', { headers: { 'x-switch': 'other' } });
    assert.equal(moved.text, 'other');
    // `up` answers 200 again: the next requests should probe it and close the circuit.
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      statuses.push((await send(gw.port, '/')).status);
      await sleep(100);
    }
    assert.equal(statuses.at(-1), 200, `statuses after recovery: ${statuses.join(',')}`);
  });
});
