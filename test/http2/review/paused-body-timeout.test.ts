// A handler that applies backpressure to an upload (its consumer returns false, resumeBody later) withholds
// the stream's window, so the client cannot send: the time is the server's. HTTP/1.1 restarts its body timer
// while the reader is paused (exchange.ts onTimer TIMER_BODY); HTTP/2's sweep counts it against the client
// (`!s.bodyEnded && s.blockedSince === 0 && now - s.lastActive >= requestTimeout`) and answers 408.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, H2Client, startH2, T } from '../support.ts';

const POST: [string, string][] = [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':authority', 'x'],
  [':path', '/p'],
];

test('a reader paused longer than requestTimeout: the upload completes', async (t) => {
  const s = await startH2(
    (req, res) => {
      let n = 0;
      let paused = false;
      req.pipe({
        data(chunk) {
          n += chunk.length;
          if (!paused) {
            paused = true;
            setTimeout(() => req.resumeBody(), 1200); // a slow destination
            return false;
          }
          return true;
        },
        end() {
          res.end(`got ${n}`);
        },
        error() {},
      });
    },
    { requestTimeout: 400 },
  );
  const c = await H2Client.connect(s.port);
  t.after(async () => {
    c.close();
    await s.engine.stop();
  });
  // The whole stream window (65,535): the client may send no more until the server gives some back.
  const body: Buffer[] = [];
  for (let sent = 0; sent < 65_535; sent += 16_384)
    body.push(frame(T.DATA, 0, 1, Buffer.alloc(Math.min(16_384, 65_535 - sent), 0x61)));
  c.send(c.headers(1, POST, false), ...body);
  await c
    .until((f) => f.type === T.WINDOW_UPDATE && f.stream === 1, 'the stream window reopened', 4000)
    .catch((err: Error) => {
      const head = c.frames.find((f) => f.type === T.HEADERS && f.stream === 1);
      throw head ? new Error(`answered ${head.fields?.find(([k]) => k === ':status')?.[1]} instead`) : err;
    });
  c.send(frame(T.DATA, 1, 1, Buffer.from('end')));
  const r = await c.response(1);
  assert.equal(`${r.status} ${r.body.trim()}`, `200 got ${65_535 + 3}`);
});
