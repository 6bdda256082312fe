// With maxHeaderListSize below the header block limit, a single string longer than the list limit makes the
// decoder throw HeaderListTooLarge from inside `string()`, mid-block: the rest of the block is never decoded,
// so entries it adds (incremental indexing) are missing from the server's table while the connection goes on
// (431 on the stream). The next request that references them fails with COMPRESSION_ERROR (or reads another
// field's value).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { H2Client, startH2, T } from '../support.ts';

test('a field longer than maxHeaderListSize: 431, and the decoder stays in step', async (t) => {
  const s = await startH2((req, res) => res.end(`x-after=${req.header('x-after')}`), {
    http2: { maxHeaderListSize: 4096 },
  });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  // x-big (5000 octets, sent raw: '^' does not Huffman-code shorter) goes without indexing; x-after is indexed.
  c.send(
    c.headers(
      1,
      H2Client.get('/', [
        ['x-big', '^'.repeat(5000)],
        ['x-after', '1'],
      ]),
    ),
  );
  assert.equal((await c.response(1)).status, 431);
  c.send(c.headers(3, H2Client.get('/', [['x-after', '1']])));
  const r = await c.response(3).catch((err: Error) => {
    const goaway = c.frames.find((f) => f.type === T.GOAWAY);
    throw new Error(
      `stream 3 not answered: ${goaway ? `GOAWAY code ${goaway.payload.readUInt32BE(4)} ${goaway.payload.subarray(8)}` : err.message}`,
    );
  });
  assert.equal(r.body, 'x-after=1');
});
