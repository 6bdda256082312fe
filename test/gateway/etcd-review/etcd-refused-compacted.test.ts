// A change etcd holds but the gateway refused (invalid), then a compaction past it (etcd's auto-compaction),
// then any watch restart: EtcdConfigSource.watch starts the new watch from the revision *served* (before the
// refused one), which is compacted; the source re-reads, the reload is refused again, and the next watch
// starts from the same compacted revision. Because the watch's "created" message resets the backoff to
// 250 ms, this is a hot loop: a re-read, a refused reload and two log lines about three times a second, for
// as long as the invalid value stays in etcd.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EtcdConfigSource, startGateway } from 'netloom/gateway';
import { type EtcdServer, relay, startEtcd } from '../etcd-support.ts';
import { namedUpstream, sleep, waitUntil } from '../support.ts';

describe('a refused revision that etcd then compacts', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('a watch restart does not loop on compaction while etcd holds a refused configuration', async (t) => {
    const a = await namedUpstream('A');
    t.after(() => a.close());
    const cut = await relay(Number(new URL(etcd.endpoint).port));
    t.after(() => cut.close());
    const key = '/review/refused-compacted';
    const valid = {
      listeners: [{ address: '127.0.0.1:0', loops: 1 }],
      upstreams: { app: { targets: [{ address: a.address }] } },
      routes: [{ name: 'all', match: { path: '/' }, upstream: 'app' }],
    };
    await etcd.client.put(key, JSON.stringify(valid));
    const logs: string[] = [];
    const source = new EtcdConfigSource({
      endpoints: [cut.endpoint],
      key,
      checkInterval: 0,
      log: (message) => logs.push(message),
    });
    const gw = await startGateway({ source });
    t.after(() => gw.stop());

    // An invalid change: refused (the watch saw it), the served revision stays.
    const bad = await etcd.client.put(
      key,
      JSON.stringify({ ...valid, routes: [{ name: 'x', match: { path: '/' }, upstream: 'nope' }] }),
    );
    await waitUntil(() => source.revision === bad, 3000, 'the invalid change read');
    // Other writes go on in etcd (other keys, other fleets); auto-compaction removes the history before them.
    await etcd.client.compact(await etcd.client.put('/review/elsewhere', 'x'));
    // The watch breaks once (a network blip, an etcd restart, or its own idle limit).
    cut.cut();
    cut.restore();
    await sleep(3000);
    const rewatches = source.status().rewatches;
    assert.ok(
      rewatches <= 2,
      `the watch was restarted ${rewatches} times in 3 s with nothing changing in etcd: ${JSON.stringify(logs.slice(0, 4))}`,
    );
  });
});
