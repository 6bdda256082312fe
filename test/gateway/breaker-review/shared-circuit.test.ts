// Review (breaker-review): two circuit-breaker entries on one route (say one for failures, one for slow
// calls) get the same `setup.local` map (keyed by filter name and route), so they share one Circuit object:
// every outcome is counted twice, and once half-open the first entry takes the probe slot, the second finds
// the slots full and answers the fallback, and the first gives its slot back: the circuit is half-open
// forever and every request gets the 503 although the upstream has recovered.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

describe('breaker-review: two circuit-breakers on one route', { timeout: 15_000 }, () => {
  test('the failure breaker closes again once the upstream recovers', async (t) => {
    const mode = { status: 500 };
    const up = await httpUpstream((_req, res) => res.writeHead(mode.status).end('x'));
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address], { retries: 0 }) }, [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'up',
          filters: [
            { name: 'circuit-breaker', minimumRequests: 2, openTime: 200, halfOpenRequests: 1 },
            // A second breaker for slow calls only: it never sees enough requests to open on its own.
            {
              name: 'circuit-breaker',
              minimumRequests: 1000,
              halfOpenRequests: 1,
              failureStatuses: [],
              slowCalls: { threshold: 5000, rate: 50 },
            },
          ],
        },
      ]),
    );
    t.after(() => gw.stop());
    assert.equal((await send(gw.port, '/')).status, 500);
    assert.equal((await send(gw.port, '/')).status, 500);
    assert.equal((await send(gw.port, '/')).status, 503, 'the first breaker opened');
    mode.status = 200;
    await sleep(300);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await send(gw.port, '/')).status);
    assert.deepEqual(
      statuses,
      [200, 200, 200, 200, 200],
      'the probe reaches the recovered upstream, then it closes',
    );
  });

  test('each breaker counts the requests once: minimumRequests is not reached early', async (t) => {
    const up = await httpUpstream((_req, res) => res.writeHead(500).end('x'));
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([up.address], { retries: 0 }) }, [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'up',
          filters: [
            { name: 'circuit-breaker', minimumRequests: 4, failureRate: 50, openTime: 10_000 },
            { name: 'circuit-breaker', minimumRequests: 1000, failureStatuses: [] },
          ],
        },
      ]),
    );
    t.after(() => gw.stop());
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await send(gw.port, '/')).status);
    // The first breaker needs 4 requests in its window: 4 failures pass, the 5th gets the fallback.
    assert.deepEqual(statuses, [500, 500, 500, 500, 503]);
  });
});
