// Review (breaker2-review): CompletionRecord.circuit documents `half-open` as "let through as a probe", but
// a request that met the half-open circuit with its probe slots full and got the fallback (here, the
// degraded upstream) is recorded `half-open` too: the record cannot tell a probe from a fallback.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { records as seen } from '../fixtures/governance-filters.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

const PLUGIN = new URL('../fixtures/governance-filters.ts', import.meta.url);

describe('breaker2-review: the record of a fallback while half-open', { timeout: 15_000 }, () => {
  test('only probes are recorded half-open', async (t) => {
    const mode = { status: 500 };
    const primary = await httpUpstream((_req, res) => {
      if (mode.status === 200) setTimeout(() => res.writeHead(200).end('primary'), 300);
      else res.writeHead(mode.status).end('primary');
    });
    t.after(() => primary.close());
    const degraded = await httpUpstream((_req, res) => res.writeHead(200).end('degraded'));
    t.after(() => degraded.close());
    const gw = await startTestGateway(
      gatewayConfig(
        {
          primary: upstreamOf([primary.address], { retries: 0 }),
          degraded: upstreamOf([degraded.address], { retries: 0 }),
        },
        [
          {
            name: 'api',
            match: { path: '/' },
            upstream: 'primary',
            filters: [
              { name: 'record-keeper' },
              {
                name: 'circuit-breaker',
                minimumRequests: 2,
                openTime: 200,
                halfOpenRequests: 1,
                fallback: { upstream: 'degraded' },
              },
            ],
          },
        ],
      ),
      { plugins: [PLUGIN] },
    );
    t.after(() => gw.stop());
    for (let i = 0; i < 2; i++) assert.equal((await send(gw.port, '/')).status, 500);
    mode.status = 200;
    await sleep(250);
    seen.length = 0;
    const probe = send(gw.port, '/'); // the one probe, answered in 300 ms
    await sleep(50);
    assert.equal((await send(gw.port, '/')).text, 'degraded'); // the slot is taken: the fallback
    assert.equal((await probe).text, 'primary');
    const byUpstream = Object.fromEntries(seen.map((r) => [r.upstream, r.circuit]));
    assert.equal(byUpstream.primary, 'half-open');
    assert.notEqual(byUpstream.degraded, 'half-open', 'a fallback recorded as a probe');
  });
});
