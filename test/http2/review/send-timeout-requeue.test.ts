// A stream that blocked on a window, was flushed by a stream WINDOW_UPDATE, and blocks again is never timed:
// flushStream clears `blockedSince` but leaves `queued` set (it stays in the blocked list), so the next
// blockStreamOutput returns at `if (s.queued) return` without arming `blockedSince`. A client that keeps the
// window shut from then on holds the stream (and its queued body) forever; sendTimeout never resets it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { E, frame, H2Client, startH2, T, u32 } from '../support.ts';

test('a window shut a second time: the stream is still reset after sendTimeout', async (t) => {
  const s = await startH2(
    async (_req, res) => {
      if (!res.write(Buffer.alloc(100_000, 0x61))) await res.drain();
      res.write(Buffer.alloc(100_000, 0x62)); // blocks at once: the stream window is 0 again
      await new Promise<void>(() => {});
    },
    { http2: { sendTimeout: 300 } },
  );
  const c = await H2Client.connect(s.port);
  t.after(async () => {
    c.close();
    await s.engine.stop();
  });
  c.send(frame(T.WINDOW_UPDATE, 0, 0, u32(1 << 30)), c.headers(1, H2Client.get()));
  // The first 65,535 octets come within the initial stream window; then exactly what is left of the first
  // write is granted, so the queue empties and the stream window is 0 when the second write comes.
  await c.until((f) => f.type === T.DATA && f.stream === 1, 'DATA');
  await new Promise((r) => setTimeout(r, 100));
  c.send(frame(T.WINDOW_UPDATE, 0, 1, u32(100_000 - 65_535)));
  const code = await c.rst(1, 3000);
  assert.equal(code, E.CANCEL);
});
