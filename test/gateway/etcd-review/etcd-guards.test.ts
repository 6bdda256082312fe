// Guards (these pass): behaviours the review checked and found right, kept against regressions.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EtcdConfigSource, pushConfig } from 'netloom/gateway';
import { type EtcdServer, fleetConfig, relay, startEtcd } from '../etcd-support.ts';
import { sleep } from '../support.ts';

const quiet = () => {};

describe('etcd guards', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('a lease id round-trips exactly (int64 as text)', async () => {
    const lease = await etcd.client.grantLease(30);
    assert.match(lease, /^\d+$/);
    await etcd.client.put('/review/leased', 'v', lease);
    assert.equal((await etcd.client.range('/review/leased')).kvs[0]!.lease, lease);
    assert.equal(await etcd.client.keepAlive(lease), true);
    await etcd.client.revokeLease(lease);
    assert.equal((await etcd.client.range('/review/leased')).kvs.length, 0);
  });

  test('a prefix push deletes the routes and upstreams it drops, and no other key', async () => {
    const prefix = '/review/push-keys/';
    const dir = mkdtempSync(join(tmpdir(), 'netloom-review-push-'));
    const write = (name: string, c: unknown) => {
      const p = join(dir, name);
      writeFileSync(p, JSON.stringify(c));
      return p;
    };
    await pushConfig(
      write(
        'one.json',
        fleetConfig(8080, '127.0.0.1:9001', {
          upstreams: {
            app: { targets: [{ address: '127.0.0.1:9001' }] },
            old: { targets: [{ address: '127.0.0.1:9002' }] },
          },
          routes: [
            { name: 'old', match: { path: '/old' }, upstream: 'old' },
            { name: 'all', match: { path: '/' }, upstream: 'app' },
          ],
        }),
      ),
      { endpoints: [etcd.endpoint], prefix },
    );
    await etcd.client.put(`${prefix}notes`, 'kept');
    await etcd.client.put('/review/push-keys-sibling/routes/0000-x', 'kept');
    await pushConfig(write('two.json', fleetConfig(8080, '127.0.0.1:9001')), {
      endpoints: [etcd.endpoint],
      prefix,
    });
    const keys = (await etcd.client.range(prefix, true)).kvs.map((kv) => kv.key);
    assert.deepEqual(keys, [
      `${prefix}base`,
      `${prefix}notes`,
      `${prefix}pushed`,
      `${prefix}routes/0000-all`,
      `${prefix}upstreams/app`,
    ]);
    assert.equal((await etcd.client.range('/review/push-keys-sibling/routes/0000-x')).kvs.length, 1);
  });

  test('a stopped source does not call onChange again (retries while etcd is unreachable)', async (t) => {
    const key = '/review/stop';
    await etcd.client.put(key, '{}');
    const cut = await relay(Number(new URL(etcd.endpoint).port));
    t.after(() => cut.close());
    const source = new EtcdConfigSource({
      endpoints: [cut.endpoint],
      key,
      checkInterval: 50,
      timeout: 300,
      log: quiet,
    });
    await source.load();
    source.applied();
    let calls = 0;
    const stop = source.watch(() => {
      calls++;
    });
    cut.cut();
    await sleep(600);
    stop();
    const atStop = calls;
    await sleep(1500);
    assert.equal(calls, atStop);
  });
});
