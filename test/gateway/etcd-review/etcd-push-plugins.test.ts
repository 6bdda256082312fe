// `config push` validates "filters included, as --check does": loadConfig resolves the file's relative
// `plugins` against the file's directory, and the push stores them as written. The gateway resolves them
// against its own directory (cli.ts gives EtcdConfigSource `directory: process.cwd()`): a push that
// validated yields a configuration the fleet cannot start from (or a different module at that path).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EtcdConfigSource, pushConfig, startGateway } from 'netloom/gateway';
import { type EtcdServer, startEtcd } from '../etcd-support.ts';

const PLUGIN = new URL('./review-filters.ts', import.meta.url).href;

describe('config push and plugins', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  // Each gateway resolves plugins where it runs: a push refuses relative paths (validated against the
  // pusher's file, they would name another module, or none, on the fleet); absolute ones go through.
  test('a push refuses relative plugin paths; an absolute one validates and starts from etcd', async (t) => {
    // The operator's checkout, somewhere else than the gateway's working directory.
    const dir = join(mkdtempSync(join(tmpdir(), 'netloom-review-plugins-')), 'deploy', 'prod');
    mkdirSync(dir, { recursive: true });
    // The operator's filters beside the configuration (re-exporting this folder's plugin).
    writeFileSync(join(dir, 'filters.ts'), `export { loopRefuses } from ${JSON.stringify(PLUGIN)};\n`);
    const file = join(dir, 'gateway.json');
    writeFileSync(
      file,
      JSON.stringify({
        plugins: ['./filters.ts'],
        listeners: [{ address: '127.0.0.1:0', loops: 1 }],
        upstreams: { app: { targets: [{ address: '127.0.0.1:9' }] } },
        routes: [{ name: 'all', match: { path: '/' }, upstream: 'app' }],
      }),
    );
    const key = '/review/plugins';
    await assert.rejects(
      pushConfig(file, { endpoints: [etcd.endpoint], key }),
      /relative to .*absolute paths or URLs/,
    );
    assert.equal((await etcd.client.range(key)).kvs.length, 0, 'nothing written');
    writeFileSync(
      file,
      JSON.stringify({
        plugins: [new URL(`file://${join(dir, 'filters.ts')}`).href],
        listeners: [{ address: '127.0.0.1:0', loops: 1 }],
        upstreams: { app: { targets: [{ address: '127.0.0.1:9' }] } },
        routes: [{ name: 'all', match: { path: '/' }, upstream: 'app' }],
      }),
    );
    await pushConfig(file, { endpoints: [etcd.endpoint], key });
    const source = new EtcdConfigSource({
      endpoints: [etcd.endpoint],
      key,
      directory: process.cwd(),
      log: () => {},
    });
    let started: string;
    try {
      const gw = await startGateway({ source, watch: false });
      t.after(() => gw.stop());
      started = 'started';
    } catch (err) {
      started = (err as Error).message;
    }
    assert.equal(started, 'started');
  });
});
