// The cache file (EtcdConfigSource's `cacheFile`) records which source wrote it (`source`), but readCache
// never compares it: a gateway started for another key (or prefix) while etcd is down serves the
// configuration of a different fleet as its own ("fromCache", as if it were the last one it knew).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EtcdConfigSource } from 'netloom/gateway';
import { type EtcdServer, freePort, startEtcd } from '../etcd-support.ts';

const quiet = () => {};

describe('the configuration cache', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('a cache written for another key is not served as this key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'netloom-review-cache-'));
    const cacheFile = join(dir, 'cache.json');
    const configA = {
      listeners: [{ address: '127.0.0.1:1', loops: 1 }],
      upstreams: {},
      routes: [],
      fleet: 'A',
    };
    await etcd.client.put('/review/fleet-a', JSON.stringify(configA));
    const a = new EtcdConfigSource({
      endpoints: [etcd.endpoint],
      key: '/review/fleet-a',
      cacheFile,
      log: quiet,
    });
    await a.load();
    a.applied();
    assert.equal((JSON.parse(readFileSync(cacheFile, 'utf8')) as { revision: number }).revision, a.revision);

    // Fleet B's gateway, configured (by mistake or by a shared default path) with the same cache file,
    // starts while etcd is unreachable.
    const down = `http://127.0.0.1:${await freePort()}`;
    const b = new EtcdConfigSource({
      endpoints: [down],
      key: '/review/fleet-b',
      cacheFile,
      timeout: 300,
      log: quiet,
    });
    let served: unknown;
    try {
      served = await b.load();
    } catch {
      served = undefined; // the expected outcome: no configuration of its own to serve
    }
    assert.notDeepEqual(served, configA, "fleet B's gateway does not serve fleet A's configuration");
  });
});
