// After a watch ends, EtcdConfigSource re-reads first and only then (100 ms later) watches again; nothing
// re-reads after the new watch is up. When etcd comes back between the two (the re-read failed, the watch
// succeeds), a gateway that started from its cache stays on the cached configuration, `fromCache: true`,
// with etcd answering: its watch starts after the cached revision and has nothing to deliver when etcd is
// at that revision (or below it: a rebuilt cluster), so only the periodic check can catch up, and with
// `checkInterval: 0` ("0: none") nothing ever does. The README promises it "catches up when etcd answers
// (its watch, or the check)".
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EtcdConfigSource, startGateway } from 'netloom/gateway';
import { type EtcdServer, startEtcd } from '../etcd-support.ts';
import { namedUpstream, send, waitUntil } from '../support.ts';

/** A relay to `target` that drops its first `refused` connections (etcd down), then forwards (etcd back). */
async function comingBack(target: number, refused: number) {
  let seen = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    sockets.add(down);
    down.on('close', () => sockets.delete(down));
    down.on('error', () => {});
    if (++seen <= refused) {
      down.destroy();
      return;
    }
    const up = net.connect(target, '127.0.0.1');
    up.on('error', () => down.destroy());
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    down.pipe(up).pipe(down);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('a start from the cache', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('etcd back between the failed re-read and the new watch: the source still catches up', async (t) => {
    const a = await namedUpstream('A');
    t.after(() => a.close());
    const key = '/review/cache-catchup';
    const config = {
      listeners: [{ address: '127.0.0.1:0', loops: 1 }],
      upstreams: { app: { targets: [{ address: a.address }] } },
      routes: [{ name: 'all', match: { path: '/' }, upstream: 'app' }],
    };
    const revision = await etcd.client.put(key, JSON.stringify(config));
    const cacheFile = join(mkdtempSync(join(tmpdir(), 'netloom-review-cache-')), 'cache.json');
    const first = new EtcdConfigSource({ endpoints: [etcd.endpoint], key, cacheFile, log: () => {} });
    await first.load();
    first.applied(); // the cache holds `revision`

    // Down for three connections: the start's read (-> the cache), the first watch, the re-read after it.
    const flaky = await comingBack(Number(new URL(etcd.endpoint).port), 3);
    t.after(() => flaky.close());
    const source = new EtcdConfigSource({
      endpoints: [flaky.endpoint],
      key,
      cacheFile,
      checkInterval: 0,
      log: () => {},
    });
    const gw = await startGateway({ source });
    t.after(() => gw.stop());
    assert.equal(source.status().fromCache, true);
    assert.equal((await send(gw.port(), '/')).text, 'A');
    // The second watch gets through: etcd answers from here on.
    await waitUntil(() => source.status().rewatches >= 1, 3000, 'the first watch to fail');
    let caughtUp = true;
    try {
      await waitUntil(() => !source.status().fromCache, 5000, 'caught up with etcd');
    } catch {
      caughtUp = false;
    }
    assert.deepEqual(
      { caughtUp, fromCache: source.status().fromCache },
      { caughtUp: true, fromCache: false },
      `etcd (revision ${revision}) has answered for 5 s`,
    );
  });
});
