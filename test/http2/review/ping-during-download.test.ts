// `control()` refuses to answer PING or SETTINGS (GOAWAY ENHANCE_YOUR_CALM, "the client does not read what
// it asks for") whenever the connection's outbound bytes pass 1 MiB, whatever those bytes are. Response DATA
// the client's windows allowed counts too: a client with large windows (browsers advertise MiBs) that pings
// while a big response is going out (gRPC's BDP ping, a health check) loses the connection mid-download.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, H2Client, startH2, T, u32 } from '../support.ts';

test('a PING while a large response is in flight is answered, the download completes', async (t) => {
  const size = 8 * 1024 * 1024;
  const s = await startH2((_req, res) => res.end(Buffer.alloc(size, 0x61)));
  const c = await H2Client.connect(s.port, true, [[4, 16 * 1024 * 1024]]); // INITIAL_WINDOW_SIZE 16 MiB
  t.after(async () => {
    c.close();
    await s.engine.stop();
  });
  c.send(
    frame(T.WINDOW_UPDATE, 0, 0, u32(16 * 1024 * 1024)),
    c.headers(1, H2Client.get('/big')),
    frame(T.PING, 0, 0, Buffer.from('12345678')),
  );
  await c
    .until((f) => f.type === T.PING && (f.flags & 1) !== 0, 'PING ack', 5000)
    .catch((err: Error) => {
      const g = c.frames.find((f) => f.type === T.GOAWAY);
      throw g ? new Error(`GOAWAY code ${g.payload.readUInt32BE(4)}: ${g.payload.subarray(8)}`) : err;
    });
  const r = await c.response(1);
  assert.equal(r.body.length, size);
});
