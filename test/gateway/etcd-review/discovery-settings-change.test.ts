// A reload that changes an upstream's discovery settings (here: a second etcd endpoint for the same
// registry) made the gateway's discovery sync stop the source and forget its targets at once; the merge then
// rolls the version out with the listed targets (none), and the new source's first answer only comes as a
// later rollout. In between, every request to the upstream is refused 503 although the registry never
// changed.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type EtcdServer, startEtcd } from '../etcd-support.ts';
import { gatewayConfig, namedUpstream, send, sleep, startTestGateway, waitUntil } from '../support.ts';

describe('discovery settings changed by a reload', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('the upstream keeps its discovered targets while the new source starts', async (t) => {
    const a = await namedUpstream('A');
    t.after(() => a.close());
    const prefix = '/review/settings-change/';
    await etcd.client.put(`${prefix}a`, a.address);
    const config = (endpoints: string[]) =>
      gatewayConfig({ video: { discovery: { etcd: { endpoints, prefix } } } }, [
        { name: 'v', match: { path: '/' }, upstream: 'video' },
      ]);
    const gw = await startTestGateway(config([etcd.endpoint]));
    t.after(() => gw.stop());
    await waitUntil(async () => (await send(gw.port, '/')).text === 'A', 5000, 'A discovered');

    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    t.after(() => agent.destroy());
    const statuses: number[] = [];
    let running = true;
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (running) {
          const r = await send(gw.port, '/', { agent }).catch(() => ({ status: 0 }));
          statuses.push(r.status);
        }
      }),
    );
    await sleep(100);
    // The same registry, reachable through one more endpoint.
    gw.source.set(config([etcd.endpoint, `${etcd.endpoint}/`]));
    const result = await gw.gateway.reload();
    await sleep(500);
    running = false;
    await load;
    assert.equal(result.ok, true);
    const failed = statuses.filter((s) => s !== 200);
    assert.deepEqual(failed, [], `${failed.length} of ${statuses.length} requests failed across the reload`);
  });
});
