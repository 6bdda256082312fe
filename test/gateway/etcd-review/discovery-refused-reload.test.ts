// Reloads and discovery share one queue; a discovery change rolls out "the configuration the source gave"
// (Gateway.sourceConfig) again with the new targets. Gateway.doReload stores that configuration, and starts
// or stops discovery sources for it, before the version is known to be accepted: a reload refused after
// validation (a loop that cannot build it, a discovery source that cannot be created) leaves the refused
// configuration behind, and every later discovery change either rolls it out (serving what was refused,
// under the old source revision) or is refused with it (the discovered targets never applied).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ConfigError, validateConfig } from 'netloom/gateway';
import { type EtcdServer, startEtcd } from '../etcd-support.ts';
import { gatewayConfig, namedUpstream, send, startTestGateway, waitUntil } from '../support.ts';

const FILTERS = new URL('./review-filters.ts', import.meta.url);

/** True once GET `path` answers `name` within `ms` (false after). */
async function answersWithin(port: number, path: string, name: string, ms: number): Promise<boolean> {
  try {
    await waitUntil(
      async () => {
        for (let i = 0; i < 4; i++) if ((await send(port, path)).text === name) return true;
        return false;
      },
      ms,
      `${name} on ${path}`,
    );
    return true;
  } catch {
    return false;
  }
}

describe('discovery after a refused reload', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('a reload a loop rolled back does not stop later discovery changes from applying', async (t) => {
    const a = await namedUpstream('A');
    const b = await namedUpstream('B');
    t.after(() => Promise.all([a.close(), b.close()]));
    const prefix = '/review/refused-rollout/';
    await etcd.client.put(`${prefix}a`, a.address);
    const config = (routes: Record<string, unknown>[]) =>
      gatewayConfig({ video: { discovery: { etcd: { endpoints: [etcd.endpoint], prefix } } } }, [
        { name: 'v', match: { path: '/' }, upstream: 'video' },
        ...routes,
      ]);
    const gw = await startTestGateway(config([]), { plugins: [FILTERS] });
    t.after(() => gw.stop());
    assert.equal(await answersWithin(gw.port, '/', 'A', 5000), true, 'A discovered');

    // An edit every loop refuses to build: rolled back, version 2 (A discovered) stays.
    gw.source.set(
      config([
        { name: 'bad', match: { path: '/bad' }, upstream: 'video', filters: [{ name: 'loop-refuses' }] },
      ]),
    );
    const refused = await gw.gateway.reload();
    assert.equal(refused.ok, false, 'the loops refuse it');

    // The fleet scales: B registers, A leaves. The gateway must follow.
    await etcd.client.put(`${prefix}b`, b.address);
    await etcd.client.delete(`${prefix}a`);
    assert.equal(
      await answersWithin(gw.port, '/', 'B', 3000),
      true,
      'the discovered change applies although an unrelated reload was refused before it',
    );
  });

  test('a discovery change does not roll out a configuration whose reload was refused', async (t) => {
    const a = await namedUpstream('A');
    const b = await namedUpstream('B');
    t.after(() => Promise.all([a.close(), b.close()]));
    const prefix = '/review/refused-dns/';
    await etcd.client.put(`${prefix}a`, a.address);
    const upstreams = (extra: Record<string, unknown> = {}) => ({
      video: { discovery: { etcd: { endpoints: [etcd.endpoint], prefix } } },
      other: { targets: [{ address: b.address }] },
      ...extra,
    });
    const gw = await startTestGateway(
      gatewayConfig(upstreams(), [
        { name: 'v', match: { path: '/' }, upstream: 'video' },
        { name: 'x', match: { path: '/x' }, upstream: 'video' },
      ]),
    );
    t.after(() => gw.stop());
    assert.equal(await answersWithin(gw.port, '/', 'A', 5000), true, 'A discovered');

    // An edit that sends /x elsewhere and adds a DNS-discovered upstream whose resolver address is not an IP:
    // validation lets it through, the gateway refuses the reload when it creates the DNS source.
    gw.source.set(
      gatewayConfig(
        upstreams({
          users: { discovery: { dns: { name: 'users.example', type: 'SRV', server: 'not-an-ip' } } },
        }),
        [
          { name: 'v', match: { path: '/' }, upstream: 'video' },
          { name: 'x', match: { path: '/x' }, upstream: 'other' },
        ],
      ),
    );
    const refused = await gw.gateway.reload();
    assert.equal(refused.ok, false, `refused: ${JSON.stringify(refused)}`);
    assert.match(
      refused.ok ? '' : refused.problems.join('\n'),
      /Invalid IP address|the resolver is an IP address/,
    );
    const version = gw.gateway.version;
    assert.equal((await send(gw.port, '/x')).text, 'A', 'the refused edit is not in force');

    // A registration changes: only the targets may change, not /x.
    await etcd.client.put(`${prefix}a`, JSON.stringify({ address: a.address, weight: 2 }));
    await waitUntil(() => gw.gateway.version > version, 3000, 'the discovery rollout');
    assert.equal(
      (await send(gw.port, '/x')).text,
      'A',
      'the refused edit did not come into force with the targets',
    );
  });

  test('validation refuses a DNS discovery resolver that is not an address (as the gateway would)', () => {
    const input = gatewayConfig(
      { users: { discovery: { dns: { name: 'users.example', type: 'SRV', server: 'not-an-ip' } } } },
      [{ name: 'u', match: { path: '/' }, upstream: 'users' }],
    );
    // `netloom-gateway --check` and `config push` validate with this: a configuration they accept must start.
    assert.throws(() => validateConfig(input, 'inline'), ConfigError);
  });
});
