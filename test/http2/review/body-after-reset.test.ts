// The client resets a stream before the handler got to its body: Http2Stream.abort -> bodyFailed sets
// `bodyTaken`, so a later req.body() fails in attachBody with ERR_HTTP_BODY_CONSUMED ("the request body is
// already being read", a 500 logged as an error by handlerFailed) instead of the stream's abort reason
// (ERR_HTTP_CLOSED), which attachBody only looks at after the bodyTaken check. Every client cancel of an
// upload whose handler had not started reading logs a handler failure.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { E, frame, H2Client, startH2, T, u32 } from '../support.ts';

test('req.body() after the client reset the stream rejects with ERR_HTTP_CLOSED', async (t) => {
  let code: unknown;
  let done!: () => void;
  const settled = new Promise<void>((r) => (done = r));
  const s = await startH2(async (req) => {
    await new Promise((r) => setTimeout(r, 100));
    try {
      await req.body();
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    done();
  });
  const c = await H2Client.connect(s.port);
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
  c.send(c.headers(1, post, false), frame(T.RST_STREAM, 0, 1, u32(E.CANCEL)));
  await settled;
  assert.equal(code, 'ERR_HTTP_CLOSED');
});
