// EtcdConfigSource.watch's periodic check: the function that stops watching clears the interval, but a check
// already in flight still calls onChange when it resolves (its `.then` never looks at `stopped`): a stopped
// source asks its gateway to reload after `stop()` (a refused "the gateway is stopping" reload, counted and
// published on the reload channel).
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { EtcdConfigSource } from 'netloom/gateway';
import { type EtcdServer, startEtcd } from '../etcd-support.ts';
import { sleep } from '../support.ts';

/** A relay to `target` that holds every chunk for `delayMs` each way (a slow etcd or a slow network). */
async function slowRelay(target: number, delayMs: number) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(target, '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    down.on('close', () => setTimeout(() => up.destroy(), delayMs));
    up.on('close', () => setTimeout(() => down.destroy(), delayMs + 10));
    down.on('data', (d) => setTimeout(() => up.write(d), delayMs));
    up.on('data', (d) => setTimeout(() => down.writable && down.write(d), delayMs));
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

describe('stopping an etcd source', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('no onChange after the watch was stopped, even from a check in flight', async (t) => {
    const key = '/review/stop-check';
    await etcd.client.put(key, '{"a": 1}');
    const slow = await slowRelay(Number(new URL(etcd.endpoint).port), 300);
    t.after(() => slow.close());
    const source = new EtcdConfigSource({
      endpoints: [slow.endpoint],
      key,
      checkInterval: 100,
      log: () => {},
    });
    await source.load();
    source.applied();
    let calls = 0;
    const stop = source.watch(() => {
      calls++;
    });
    await sleep(250);
    await etcd.client.put(key, '{"a": 2}'); // checks started from now on see a change
    await sleep(150);
    const atStop = calls;
    stop();
    await sleep(1500);
    assert.equal(calls, atStop, 'onChange was called after stop()');
  });
});
