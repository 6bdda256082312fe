// A DATA frame that causes a stream error (more DATA than content-length, or a body past maxBodySize) was
// already counted against the connection's receive window, and is never given back: the connection's window
// shrinks by every such frame until no stream on the connection can upload anything.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, H2Client, startH2, T } from '../support.ts';

const post = (extra: [string, string][] = []): [string, string][] => [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':authority', 'x'],
  [':path', '/p'],
  ...extra,
];

async function run(options: object, fields: [string, string][]) {
  const s = await startH2(async (req, res) => res.end(`got ${(await req.body()).length}`), options);
  const c = await H2Client.connect(s.port);
  try {
    // 40 streams, each one 16 KiB DATA frame that the server refuses with a stream error: 640 KiB of the
    // 1 MiB connection window. A server that gives the credit back sends a connection WINDOW_UPDATE once
    // half its window (512 KiB) was consumed.
    const seen = c.frames.length; // the handshake's frames (its WINDOW_UPDATE opening the 1 MiB window)
    const out: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      const id = 1 + 2 * i;
      out.push(c.headers(id, fields, false), frame(T.DATA, 0, id, Buffer.alloc(16_384, 0x61)));
    }
    c.send(...out);
    await c.until((f) => f.type === T.RST_STREAM && f.stream === 79, 'the 40th stream refused', 3000);
    const wu = await c
      .until(
        (f) => f.type === T.WINDOW_UPDATE && f.stream === 0 && c.frames.indexOf(f) >= seen,
        'a connection WINDOW_UPDATE',
        1500,
      )
      .then(
        () => true,
        () => false,
      );
    assert.ok(wu, `640 KiB of refused DATA never given back to the connection window; got ${c.describe()}`);
  } finally {
    c.close();
    await s.engine.stop();
  }
}

test('DATA past content-length: its octets go back to the connection window', async () => {
  await run({}, post([['content-length', '1']]));
});

test('DATA past maxBodySize (413): its octets go back to the connection window', async () => {
  await run({ maxBodySize: 1000 }, post());
});
