// With initialWindowSize below 65,535, the server enforces the smaller stream window from the first frame,
// though the client may use the initial 65,535 until it has our SETTINGS (RFC 9113 §6.5.3, §6.9.2: the
// value applies once acknowledged). A client that sends its request and 32 KiB of body right after the
// preface, as prior-knowledge clients do, gets RST_STREAM FLOW_CONTROL_ERROR.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, H2Client, PREFACE, settings, startH2, T } from '../support.ts';

test('a body within 65,535 octets sent before our SETTINGS arrived is accepted', async (t) => {
  const s = await startH2(
    async (req, res) => {
      await new Promise((r) => setTimeout(r, 50)); // reads the body a little later (an auth lookup first)
      res.end(`got ${(await req.body()).length}`);
    },
    { http2: { initialWindowSize: 16_384 } },
  );
  const c = await H2Client.connect(s.port, false);
  t.after(async () => {
    c.close();
    await s.engine.stop();
  });
  const post: [string, string][] = [
    [':method', 'POST'],
    [':scheme', 'http'],
    [':authority', 'x'],
    [':path', '/'],
  ];
  c.send(
    PREFACE,
    settings([]),
    c.headers(1, post, false),
    frame(T.DATA, 0, 1, Buffer.alloc(16_384, 0x61)),
    frame(T.DATA, 1, 1, Buffer.alloc(16_384, 0x61)),
  );
  const answer = await Promise.race([
    c.response(1).then((r) => r.body),
    c.rst(1).then((code) => `RST_STREAM ${code}`),
  ]);
  assert.equal(answer, 'got 32768');
});
