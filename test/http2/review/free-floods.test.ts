// The control-frame budget (maxControlFramesPerSecond) is taken by PING, SETTINGS, PRIORITY, unknown
// frames, WINDOW_UPDATE for nothing sent...; but frames just as useless cost nothing when they name a closed
// stream or carry ACK: WINDOW_UPDATE and RST_STREAM on a closed stream return before `calm()`, so do PING
// and SETTINGS with ACK (we never sent a PING; our SETTINGS were acknowledged), and DATA on a stream we
// reset. A client sends them without end and is never told ENHANCE_YOUR_CALM.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { E, F, frame, H2Client, startH2, T, u32 } from '../support.ts';

const floods: [string, () => Buffer][] = [
  ['WINDOW_UPDATE on a closed stream', () => frame(T.WINDOW_UPDATE, 0, 1, u32(1))],
  ['RST_STREAM on a closed stream', () => frame(T.RST_STREAM, 0, 1, u32(E.CANCEL))],
  ['PING with ACK', () => frame(T.PING, F.ACK, 0, Buffer.alloc(8))],
  ['SETTINGS with ACK', () => frame(T.SETTINGS, F.ACK, 0)],
];

for (const [name, make] of floods) {
  test(`a flood of ${name}: GOAWAY ENHANCE_YOUR_CALM like the other control-frame floods`, async (t) => {
    const s = await startH2((_req, res) => res.end('x'));
    const c = await H2Client.connect(s.port);
    t.after(async () => {
      c.close();
      await s.engine.stop();
    });
    c.send(c.headers(1, H2Client.get()));
    await c.response(1); // stream 1 is closed
    const one = make();
    // 20,000 frames at once: ten times the burst (2,000) the PING flood test trips.
    c.send(Buffer.concat(Array.from({ length: 20_000 }, () => one)));
    c.send(frame(T.PING, 0, 0, Buffer.from('probe!!!')));
    const g = await c.goaway(3000).catch(() => null);
    assert.equal(g?.code, E.ENHANCE_YOUR_CALM, `no GOAWAY; the server answered: ${c.describe()}`);
  });
}
