// A body consumer's callback runs inside frame processing (Http2Stream.onData -> consumer.data, onBodyEnd ->
// consumer.end); an exception there is not an Http2Error, so Http2Connection.process() rethrows it into the
// engine, which destroys the connection: one handler's bug on one stream kills every other stream of the
// client (a browser's other requests). It should fail that stream only (reset INTERNAL_ERROR, or a 500).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, H2Client, startH2, T } from '../support.ts';

const POST: [string, string][] = [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':authority', 'x'],
  [':path', '/upload'],
];

test('a consumer that throws fails its own stream, not the connection', async (t) => {
  const s = await startH2(async (req, res) => {
    if (req.path === '/slow') {
      await new Promise((r) => setTimeout(r, 200));
      res.end('slow done');
      return;
    }
    req.pipe({
      data() {
        throw new Error('handler bug');
      },
      end() {
        res.end('?');
      },
      error() {},
    });
  });
  const c = await H2Client.connect(s.port);
  t.after(async () => {
    c.close();
    await s.engine.stop();
  });
  c.send(c.headers(1, H2Client.get('/slow')));
  c.send(c.headers(3, POST, false), frame(T.DATA, 1, 3, Buffer.from('hello')));
  const r = await c.response(1, 3000);
  assert.equal(r.body, 'slow done');
});
