// EtcdClient.watch: how a watch ends.
// - The idle timer that turns a silent stream into a failure is armed only once response headers arrive:
//   a watch whose request is accepted but never answered (a member that hangs, a proxy or load balancer that
//   holds the connection, a half-open TCP path) never ends, so EtcdConfigSource never re-reads or
//   re-watches and discovery never reads again.
// - "Progress notifications keep an idle stream alive": etcd sends them every 10 minutes by default
//   (--experimental-watch-progress-notify-interval), not within the 15 s idle limit, so every quiet watch
//   "fails" every ~15 s: a log line, a rewatch and a full re-read (a reload) each time, forever, and
//   `sourceStatus.rewatches` counts nothing useful.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { EtcdClient, EtcdConfigSource, type WatchEnd } from 'netloom/gateway';
import { type EtcdServer, startEtcd } from '../etcd-support.ts';
import { sleep, waitUntil } from '../support.ts';

describe('etcd watches', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('a watch whose request is never answered ends (failed) within its idle limit', async (t) => {
    // Accepts the connection and reads the request; never answers.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.resume();
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    t.after(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    );
    const port = (silent.address() as net.AddressInfo).port;
    const client = new EtcdClient({ endpoints: [`http://127.0.0.1:${port}`], timeout: 500 });
    let ended: WatchEnd | null = null;
    const watch = client.watch(
      '/review/hang',
      false,
      1,
      () => {},
      (e) => {
        ended = e;
      },
      500,
    );
    t.after(() => watch.close());
    try {
      await waitUntil(() => ended !== null, 3000, 'the watch to end');
    } catch {}
    assert.equal(
      (ended as WatchEnd | null)?.reason,
      'failed',
      'the hung watch is reported, so the caller re-reads',
    );
  });

  test('a quiet watch on a healthy etcd is not restarted (no rewatch, no re-read) after 15 s', async (t) => {
    const key = '/review/quiet';
    await etcd.client.put(key, JSON.stringify({ listeners: [], upstreams: {}, routes: [] }));
    const logs: string[] = [];
    const source = new EtcdConfigSource({
      endpoints: [etcd.endpoint],
      key,
      checkInterval: 0,
      log: (message) => logs.push(message),
    });
    await source.load();
    source.applied();
    let rereads = 0;
    const stop = source.watch(() => {
      rereads++;
      // What the gateway does: load and apply (nothing changed).
      void source.load().then(() => source.applied());
    });
    t.after(stop);
    await sleep(16_000);
    assert.deepEqual(
      { rewatches: source.status().rewatches, rereads, logs },
      { rewatches: 0, rereads: 0, logs: [] },
      'nothing changed and etcd was up all along',
    );
  });
});
