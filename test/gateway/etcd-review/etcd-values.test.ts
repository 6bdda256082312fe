// Values under an etcd prefix are "JSON or YAML" (README, config-etcd.ts), but parseValue sends anything
// that starts with `{` or `[` to JSON.parse: a route written as a YAML flow mapping, the natural one-liner
// for `etcdctl put <prefix>routes/0001-x '{name: x, match: {path: /x}, upstream: app}'`, is refused as "not
// JSON or YAML" although it is valid YAML.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EtcdConfigSource } from 'netloom/gateway';
import { type EtcdServer, startEtcd } from '../etcd-support.ts';

describe('etcd values', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('a route in YAML flow style is read as YAML', async () => {
    const prefix = '/review/yaml-flow/';
    await etcd.client.put(`${prefix}base`, 'listeners: [{address: "127.0.0.1:0"}]');
    await etcd.client.put(`${prefix}upstreams/app`, 'targets:\n  - address: 127.0.0.1:9001\n');
    await etcd.client.put(`${prefix}routes/0000-x`, '{name: x, match: {path: /x}, upstream: app}');
    const source = new EtcdConfigSource({ endpoints: [etcd.endpoint], prefix, log: () => {} });
    const config = (await source.load()) as { routes: unknown[] };
    assert.deepEqual(config.routes, [{ name: 'x', match: { path: '/x' }, upstream: 'app' }]);
  });
});
