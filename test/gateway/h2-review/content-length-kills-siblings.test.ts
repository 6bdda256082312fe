// One HTTP/2 upstream response whose DATA disagrees with its content-length is a malformed response: a stream
// error of its own (RFC 9113 §8.1.1). The other requests multiplexed on the same upstream connection must not
// be hurt by it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gatewayConfig, send, sleep, startTestGateway } from '../support.ts';
import { rawH2Upstream, T } from './helpers.ts';

for (const [label, sent] of [
  ['more', 'ten bytes!'],
  ['fewer', 'abc'],
] as const) {
  test(`a response with ${label} DATA than its content-length fails alone, not its sibling streams`, async (t) => {
    const up = await rawH2Upstream((c, f) => {
      if (f.type !== T.HEADERS) return;
      const path = f.fields!.find(([n]) => n === ':path')![1];
      if (path === '/slow') {
        c.headers(f.stream, [[':status', '200']], false);
        c.data(f.stream, Buffer.from('part1'), false);
        setTimeout(() => c.data(f.stream, Buffer.from('part2'), true), 600);
      } else {
        c.headers(
          f.stream,
          [
            [':status', '200'],
            ['content-length', '5'],
          ],
          false,
        );
        c.data(f.stream, Buffer.from(sent), true);
      }
    });
    const gw = await startTestGateway(
      gatewayConfig(
        {
          h2: {
            targets: [{ address: `127.0.0.1:${up.port}` }],
            protocol: 'http2',
            pool: { maxConnections: 1 },
            retries: 0,
          },
        },
        [{ name: 'all', match: { path: '/' }, upstream: 'h2' }],
      ),
    );
    t.after(async () => {
      await gw.stop();
      await up.close();
    });
    const slow = send(gw.port, '/slow');
    await sleep(150);
    const bad = send(gw.port, '/bad').then(
      (r) => `status ${r.status} body ${JSON.stringify(r.text)}`,
      (e: Error) => `error ${e.message}`,
    );
    const slowReply = await slow.then(
      (r) => ({ status: r.status, text: r.text }),
      (e: Error) => ({ status: -1, text: `error ${e.message}` }),
    );
    const badResult = await Promise.race([bad, sleep(3000).then(() => 'hung')]);
    assert.equal(up.conns.length, 1, 'one upstream connection for both');
    assert.deepEqual(
      slowReply,
      { status: 200, text: 'part1part2' },
      `the sibling stream (bad one: ${badResult})`,
    );
  });
}
