import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { echoHandler, httpUpstream, send, sleep, startTestGateway, waitUntil } from '../support.ts';
import { mirrored, recordingShadow } from './helpers.ts';

v8.setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

async function settledMemory(): Promise<number> {
  gc();
  await sleep(50);
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

test('a mirror waiting for its connection holds about its body, not a Buffer per chunk', async (t) => {
  // The gateway runs on this thread (one loop), so its memory is this process's.
  const main = await httpUpstream(echoHandler('main'));
  let first = true;
  const shadow = await recordingShadow((_req, res) => {
    if (first) {
      first = false;
      return undefined; // never answers: holds the shadow's only connection
    }
    res.writeHead(200, { 'content-length': '0' });
    res.end();
    return true;
  });
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(
    mirrored(
      main.address,
      shadow.address,
      {},
      {},
      { pool: { maxConnections: 1, queueTimeout: 8000 }, timeouts: { total: 9000, firstByte: 9000 } },
    ),
  );
  t.after(() => gw.stop(200));
  await send(gw.port, '/hold');
  await waitUntil(() => shadow.seen.length === 1, 2000, 'the first mirror holds the connection');

  // 250,000 one-byte chunks (250 kB of body, within maxBody's 1 MiB): the second mirror waits in the
  // shadow pool's queue and copies each chunk (Buffer.from) into its pending list.
  const chunks = 250_000;
  const before = await settledMemory();
  const s = net.connect(gw.port, '127.0.0.1');
  t.after(() => s.destroy());
  let got = '';
  s.on('data', (d: Buffer) => {
    got += d.toString('latin1');
  });
  await new Promise((r) => s.on('connect', r));
  s.write('POST /tiny HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n');
  const piece = '1\r\nx\r\n'.repeat(1000);
  for (let i = 0; i < chunks / 1000; i++) s.write(piece);
  s.write('0\r\n\r\n');
  await waitUntil(() => got.includes('"name":"main"'), 8000, 'the live answer');
  const held = (await settledMemory()) - before;
  assert.equal(gw.gateway.mirrorStats().app!.inFlight, 2, 'the second mirror still waits for its connection');
  // Its body is 250 kB; allow it four times over. Each pending chunk costs a Buffer object (~110 bytes).
  assert.ok(
    held < 1_000_000,
    `the waiting mirror holds ${(held / 1e6).toFixed(1)} MB for a 0.25 MB body (maxBody bounds bytes, not chunks)`,
  );
});
