// Fix review (bd9804c): with one circuit an upstream and loop, `create` of every `scope: upstream` entry
// re-prepares *every* upstream circuit of the loop whose bucket width is not its own ("re-made for this
// version's window when the upstreams it already serves are looked up again": it is neither limited to
// the upstreams it serves nor done at a lookup). Two routes whose breakers have different `window`s,
// on different upstreams: each reload, even one that changes nothing of either breaker (here only route
// b's minimumRequests), makes route b's entry reset upstream u's circuit (its failures are forgotten)
// and switch it to b's one-second window. Failures seen before the reload never add up with those after.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf } from '../support.ts';

const config = (failing: string, healthy: string, bMinimum = 4) =>
  gatewayConfig({ u: upstreamOf([failing], { retries: 0 }), v: upstreamOf([healthy], { retries: 0 }) }, [
    {
      name: 'a',
      match: { path: '/a' },
      upstream: 'u',
      filters: [
        { name: 'circuit-breaker', scope: 'upstream', window: 60_000, minimumRequests: 4, openTime: 30_000 },
      ],
    },
    {
      name: 'b',
      match: { path: '/b' },
      upstream: 'v',
      filters: [{ name: 'circuit-breaker', scope: 'upstream', window: 1_000, minimumRequests: bMinimum }],
    },
  ]);

describe("fix-review: upstream circuits across a reload that leaves u's breaker as it was", {
  timeout: 15_000,
}, () => {
  test("failures counted before a reload that changes nothing of u's breaker still count after it", async (t) => {
    const bad = await httpUpstream((_req, res) => res.writeHead(500).end('bad'));
    t.after(() => bad.close());
    const good = await httpUpstream((_req, res) => res.writeHead(200).end('good'));
    t.after(() => good.close());
    const gw = await startTestGateway(config(bad.address, good.address));
    t.after(() => gw.stop());
    // Three of the four failures route a's breaker needs (its window: one minute).
    for (let i = 0; i < 3; i++) assert.equal((await send(gw.port, '/a')).status, 500);
    gw.source.set(config(bad.address, good.address, 5));
    assert.equal((await gw.gateway.reload()).ok, true);
    // The fourth failure, well within the minute: 4 of 4 failed, the circuit opens.
    assert.equal((await send(gw.port, '/a')).status, 500);
    const next = await send(gw.port, '/a');
    assert.equal(next.status, 503, `4 failures in a minute open upstream u's circuit; got ${next.status}`);
    assert.equal(bad.requests, 4, 'the fifth request never reaches the failing upstream');
  });
});
