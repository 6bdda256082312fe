// `config push` by prefix: compare-and-swap and the transaction it writes.
// - The guard is `<prefix>pushed` alone, but the configuration is every key under the prefix, and the
//   README has operators edit a route in place ("A route edited in place under the prefix applies like any
//   change"): a push naming a revision from before such an edit is not refused and silently undoes it.
// - Every route and upstream is one operation of a single etcd transaction, and etcd refuses transactions of
//   more than 128 operations (`--max-txn-ops`, default 128): a valid configuration of 130 routes cannot be
//   pushed at all.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type GatewayError, pushConfig } from 'netloom/gateway';
import { type EtcdServer, fleetConfig, startEtcd } from '../etcd-support.ts';

const dir = mkdtempSync(join(tmpdir(), 'netloom-review-push-'));
function file(name: string, config: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(config));
  return path;
}

describe('config push by prefix', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('a push from a revision older than an in-place edit of a route is refused', async () => {
    const prefix = '/review/cas/';
    const first = await pushConfig(file('first.json', fleetConfig(8080, '127.0.0.1:9001')), {
      endpoints: [etcd.endpoint],
      prefix,
    });
    // Operator 1 edits the route in place (as the README shows): the configuration is now at a later revision.
    const edited = { name: 'all', match: { path: '/edited' }, upstream: 'app' };
    const editRevision = await etcd.client.put(`${prefix}routes/0000-all`, JSON.stringify(edited));
    assert.ok(editRevision > first.revision);
    // Operator 2 last saw `first.revision` and pushes on top of it: that must be a conflict.
    let outcome: string;
    try {
      await pushConfig(file('second.json', fleetConfig(8080, '127.0.0.1:9002')), {
        endpoints: [etcd.endpoint],
        prefix,
        expectRevision: first.revision,
      });
      outcome = 'stored';
    } catch (err) {
      outcome = (err as GatewayError).code ?? (err as Error).message;
    }
    const route = (await etcd.client.range(`${prefix}routes/0000-all`)).kvs[0]!.value;
    assert.equal(
      outcome,
      'ERR_GATEWAY_CONFIG_CONFLICT',
      `the stale push was ${outcome}; the route is now ${route}`,
    );
    assert.deepEqual(JSON.parse(route), edited, 'the in-place edit survives');
  });

  // etcd takes 128 operations a transaction: by prefix such a push is refused before anything is written,
  // saying why and what to do; by key the same configuration goes in one put.
  test('a valid configuration with 130 routes: refused plainly by prefix, stored by key', async () => {
    const prefix = '/review/many/';
    const config = fleetConfig(8080, '127.0.0.1:9001', {
      routes: Array.from({ length: 130 }, (_, i) => ({
        name: `r${i}`,
        match: { path: `/r${i}` },
        upstream: 'app',
      })),
    });
    await assert.rejects(
      pushConfig(file('many.json', config), { endpoints: [etcd.endpoint], prefix }),
      /more than etcd takes in one transaction .*push by key/,
    );
    assert.equal((await etcd.client.range(prefix, true)).kvs.length, 0, 'nothing written');
    await pushConfig(file('many.json', config), { endpoints: [etcd.endpoint], key: '/review/many-key' });
    const stored = JSON.parse((await etcd.client.range('/review/many-key')).kvs[0]!.value) as {
      routes: unknown[];
    };
    assert.equal(stored.routes.length, 130);
  });
});
