// A registration under a discovery prefix is written by every service instance of the fleet: one that is
// malformed in a way parseRegistration lets through (a port above 65535) must not take the gateway's
// reloads hostage. Today it reaches the loops, every rollout that merges it is refused by every loop, and
// from then on no reload and no discovery change applies until someone deletes the key.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type EtcdServer, startEtcd } from '../etcd-support.ts';
import { gatewayConfig, namedUpstream, send, startTestGateway, waitUntil } from '../support.ts';

describe('discovery: a malformed registration', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('a registration with port 99999 is skipped: reloads and later registrations still apply', async (t) => {
    const a = await namedUpstream('A');
    const c = await namedUpstream('C');
    t.after(() => Promise.all([a.close(), c.close()]));
    const prefix = '/review/bad-port/';
    await etcd.client.put(`${prefix}a`, a.address);
    const config = (extraRoutes: Record<string, unknown>[] = []) =>
      gatewayConfig({ video: { discovery: { etcd: { endpoints: [etcd.endpoint], prefix } } } }, [
        { name: 'v', match: { path: '/' }, upstream: 'video' },
        ...extraRoutes,
      ]);
    const gw = await startTestGateway(config());
    t.after(() => gw.stop());
    await waitUntil(async () => (await send(gw.port, '/')).text === 'A', 5000, 'A discovered');

    // One instance registers a bad address (a typo, a port that overflowed): it cannot be dialled.
    await etcd.client.put(`${prefix}b`, '127.0.0.1:99999');
    // A new, valid instance registers after it: the gateway should start using it.
    await etcd.client.put(`${prefix}c`, c.address);
    let seenC = false;
    try {
      await waitUntil(
        async () => {
          for (let i = 0; i < 6; i++) if ((await send(gw.port, '/')).text === 'C') return true;
          return false;
        },
        3000,
        'C discovered',
      );
      seenC = true;
    } catch {}
    // And an operator's reload (a new route) must still go through.
    gw.source.set(config([{ name: 'n', match: { path: '/new' }, upstream: 'video' }]));
    const result = await gw.gateway.reload();
    assert.equal(seenC, true, 'a valid registration made after the bad one is served');
    assert.equal(
      result.ok,
      true,
      `the reload is not refused because of the registration: ${JSON.stringify(result)}`,
    );
  });
});
