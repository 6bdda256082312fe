// "A target that leaves is drained: no new requests, those in flight finish" (README, discovery.ts). A
// request waiting in the leaving target's pool queue (its maxConnections busy) has not been sent anywhere
// yet, but TargetRegistry.apply closes that pool and TargetPool.close fails every waiter with a 'queue'
// PoolError: the client gets 503 "upstream connection pool exhausted" (a POST is never retried), while the
// target itself is alive and another one is there to take it.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type EtcdServer, startEtcd } from '../etcd-support.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, waitUntil } from '../support.ts';

/** An upstream answering its name after `delayMs` (the body is read first). */
const slow = (name: string, delayMs: number) =>
  httpUpstream((req, res) => {
    req.resume();
    req.on('end', () =>
      setTimeout(() => {
        res.writeHead(200, { 'content-length': String(name.length) });
        res.end(name);
      }, delayMs),
    );
  });

describe('discovery: a target leaving with requests queued for it', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('requests queued in the leaving target pool are answered, not refused 503', async (t) => {
    const a = await slow('A', 600);
    const b = await slow('B', 0);
    t.after(() => Promise.all([a.close(), b.close()]));
    const prefix = '/review/drain/';
    await etcd.client.put(`${prefix}a`, a.address);
    const gw = await startTestGateway(
      gatewayConfig(
        {
          video: {
            discovery: { etcd: { endpoints: [etcd.endpoint], prefix } },
            pool: { maxConnections: 1, queueTimeout: 5000 },
          },
        },
        [{ name: 'v', match: { path: '/' }, upstream: 'video' }],
      ),
    );
    t.after(() => gw.stop());
    await waitUntil(async () => (await send(gw.port, '/')).text === 'A', 5000, 'A discovered');

    // Three uploads at once: one is sent to A, two wait in A's queue (maxConnections 1).
    const agent = new http.Agent({ keepAlive: false, maxSockets: 8 });
    t.after(() => agent.destroy());
    const uploads = Array.from({ length: 3 }, () =>
      send(gw.port, '/upload', { method: 'POST', body: 'x', agent }).then(
        (r) => `${r.status} ${r.text}`,
        (e: Error) => `error ${e.message}`,
      ),
    );
    await sleep(150);
    // Scale: B registers, A deregisters (a rolling deploy).
    await etcd.client.put(`${prefix}b`, b.address);
    await etcd.client.delete(`${prefix}a`);
    const replies = await Promise.all(uploads);
    assert.deepEqual(
      replies.map((r) => r.split(' ')[0]),
      ['200', '200', '200'],
      `every upload answered: ${JSON.stringify(replies)}`,
    );
  });
});
