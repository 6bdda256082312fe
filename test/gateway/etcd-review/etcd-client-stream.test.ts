// Guards (these pass): EtcdClient.watch parses the JSON gateway's stream whatever the chunking (a message
// split anywhere, two in one chunk, CRLF, blank lines), keeps int64 lease ids as text, and reports a
// compaction as such.
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { test } from 'node:test';
import { EtcdClient, type EtcdEvent, type WatchEnd } from 'netloom/gateway';
import { sleep, waitUntil } from '../support.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('a watch stream split at odd places is parsed whole; lease ids stay exact; compaction ends it', async (t) => {
  const lease = '9223372036854775807'; // int64 max: not a double
  const messages = [
    { result: { header: { revision: '10' }, created: true } },
    {
      result: {
        header: { revision: '11' },
        events: [
          {
            kv: { key: b64('/k/a'), value: b64('{"address":"127.0.0.1:1"}'), mod_revision: '11', lease },
          },
        ],
      },
    },
    {
      result: {
        header: { revision: '12' },
        events: [{ type: 'DELETE', kv: { key: b64('/k/a'), mod_revision: '12' } }],
      },
    },
    { result: { header: { revision: '13' }, canceled: true, compact_revision: '13' } },
  ];
  const text = messages.map((m) => JSON.stringify(m)).join('\r\n\n');
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json' });
    // Odd-sized pieces, written apart.
    void (async () => {
      for (let i = 0; i < text.length; i += 7) {
        res.write(text.slice(i, i + 7));
        await sleep(1);
      }
      res.write('\n');
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  t.after(() => server.closeAllConnections());
  const port = (server.address() as net.AddressInfo).port;
  const client = new EtcdClient({ endpoints: [`http://127.0.0.1:${port}`] });
  const batches: { events: EtcdEvent[]; revision: number }[] = [];
  let ended: WatchEnd | null = null;
  const w = client.watch(
    '/k/',
    true,
    11,
    (events, revision) => batches.push({ events, revision }),
    (e) => {
      ended = e;
    },
  );
  t.after(() => w.close());
  await waitUntil(() => ended !== null, 5000, 'the compaction');
  assert.deepEqual(ended, { reason: 'compacted', compactRevision: 13 });
  assert.deepEqual(
    batches.map((b) => [b.revision, b.events.map((e) => [e.type, e.kv.key, e.kv.value, e.kv.lease])]),
    [
      [10, []],
      [11, [['put', '/k/a', '{"address":"127.0.0.1:1"}', lease]]],
      [12, [['delete', '/k/a', '', '0']]],
    ],
  );
});
