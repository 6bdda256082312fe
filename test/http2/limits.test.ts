// The limits and flood protections of the HTTP/2 server, each as the bytes a hostile client sends over a
// socket and the exact answer: REFUSED_STREAM past the concurrency limit, ENHANCE_YOUR_CALM for rapid reset
// (CVE-2023-44487), CONTINUATION floods (CVE-2024-27983) and control-frame floods, 431 for an HPACK bomb,
// and the timeouts (SETTINGS ack, idle connection, idle body, a window kept shut), and GOAWAY on shutdown.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { E, F, frame, H2Client, settings, startH2, T, u32 } from './support.ts';

const POST: [string, string][] = [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':authority', 'x'],
  [':path', '/p'],
];
const never = () => new Promise<void>(() => {});

test('SETTINGS_MAX_CONCURRENT_STREAMS is enforced: REFUSED_STREAM, and the connection goes on', async (t) => {
  const s = await startH2(never, { http2: { maxConcurrentStreams: 2 } });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  c.send(c.headers(1, H2Client.get()), c.headers(3, H2Client.get()), c.headers(5, H2Client.get()));
  assert.equal(await c.rst(5), E.REFUSED_STREAM);
  assert.equal(
    c.frames.some((f) => f.type === T.GOAWAY),
    false,
  );
});

test('rapid reset: GOAWAY ENHANCE_YOUR_CALM, and no more handlers run than the concurrency limit', async (t) => {
  let calls = 0;
  const s = await startH2(() => {
    calls++;
    return never();
  });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  const burst: Buffer[] = [];
  for (let id = 1; id < 2000; id += 2)
    burst.push(c.headers(id, H2Client.get()), frame(T.RST_STREAM, 0, id, u32(E.CANCEL)));
  c.send(...burst);
  const g = await c.goaway();
  assert.equal(g.code, E.ENHANCE_YOUR_CALM);
  assert.ok(calls <= 100, `${calls} handlers ran for cancelled streams (bound: 100)`);
});

test('a CONTINUATION flood of bytes: GOAWAY ENHANCE_YOUR_CALM before 64 KiB are buffered', async (t) => {
  const s = await startH2((_req, res) => res.end('x'));
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  const flood: Buffer[] = [frame(T.HEADERS, F.END_STREAM, 1, c.block(H2Client.get()))];
  for (let i = 0; i < 80; i++) flood.push(frame(T.CONTINUATION, 0, 1, Buffer.alloc(1024, 0x41)));
  c.send(...flood);
  assert.equal((await c.goaway()).code, E.ENHANCE_YOUR_CALM);
});

test('a flood of empty CONTINUATION frames: GOAWAY ENHANCE_YOUR_CALM', async (t) => {
  const s = await startH2((_req, res) => res.end('x'));
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  const flood: Buffer[] = [frame(T.HEADERS, F.END_STREAM, 1, c.block(H2Client.get()))];
  for (let i = 0; i < 1000; i++) flood.push(frame(T.CONTINUATION, 0, 1));
  c.send(...flood);
  assert.equal((await c.goaway()).code, E.ENHANCE_YOUR_CALM);
});

test('an HPACK bomb (a small block that decodes past SETTINGS_MAX_HEADER_LIST_SIZE): 431, connection kept', async (t) => {
  const s = await startH2((req, res) => res.end(`ok ${req.path}`));
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  // One 1000-octet value into the dynamic table (literal with incremental indexing), then 100 one-octet
  // references to it: about 100 KB of header list from a block of about 100 octets.
  const first = Buffer.from(c.encoder.encode([...H2Client.get('/seed'), ['x-bomb', 'b'.repeat(1000)]]));
  c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, first));
  assert.equal((await c.response(1)).status, 200);
  // The same pseudo-header fields again are all indexed (nothing new enters the table), so index 62 is still
  // the newest dynamic entry: the big field.
  const refs = Buffer.alloc(100, 0x80 | 62);
  const bomb = Buffer.concat([Buffer.from(c.encoder.encode(H2Client.get('/seed'))), refs]);
  assert.ok(bomb.length < 120, 'a block of about 100 octets');
  c.send(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 3, bomb));
  const r = await c.response(3);
  assert.equal(r.status, 431);
  // The decoder stayed in step: the next request (which references the same table) is served.
  c.send(
    frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 5, Buffer.from(c.encoder.encode(H2Client.get('/after')))),
  );
  assert.equal((await c.response(5)).body, 'ok /after');
});

for (const [name, make] of [
  ['PING', () => frame(T.PING, 0, 0, Buffer.alloc(8))],
  ['SETTINGS', () => settings([])],
  ['WINDOW_UPDATE for nothing sent', () => frame(T.WINDOW_UPDATE, 0, 0, u32(1))],
  ['PRIORITY', () => frame(T.PRIORITY, 0, 3, Buffer.from([0, 0, 0, 0, 16]))],
  ['unknown frame types', () => frame(0x77, 0, 0, Buffer.alloc(0))],
] as [string, () => Buffer][]) {
  test(`a ${name} flood: GOAWAY ENHANCE_YOUR_CALM`, async (t) => {
    const s = await startH2((_req, res) => res.end('x'));
    t.after(() => s.engine.stop());
    const c = await H2Client.connect(s.port);
    t.after(() => c.close());
    const one = make();
    c.send(Buffer.concat(Array.from({ length: 5000 }, () => one)));
    assert.equal((await c.goaway()).code, E.ENHANCE_YOUR_CALM);
  });
}

test('an empty DATA flood: GOAWAY ENHANCE_YOUR_CALM', async (t) => {
  const s = await startH2(never);
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  const empty = frame(T.DATA, 0, 1);
  c.send(c.headers(1, POST, false), Buffer.concat(Array.from({ length: 5000 }, () => empty)));
  assert.equal((await c.goaway()).code, E.ENHANCE_YOUR_CALM);
});

test('a flood of zero-length HEADERS (malformed requests): RST_STREAM each, then ENHANCE_YOUR_CALM', async (t) => {
  const s = await startH2((_req, res) => res.end('x'));
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  const flood: Buffer[] = [];
  for (let id = 1; id < 2000; id += 2) flood.push(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, id));
  c.send(...flood);
  assert.equal(await c.rst(1), E.PROTOCOL_ERROR);
  assert.equal((await c.goaway()).code, E.ENHANCE_YOUR_CALM);
});

test('a client that keeps the window at zero: the stream is reset (CANCEL) after sendTimeout', async (t) => {
  const s = await startH2((_req, res) => res.end(Buffer.alloc(1000)), { http2: { sendTimeout: 300 } });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port, true, [[4, 0]]);
  t.after(() => c.close());
  c.send(c.headers(1, H2Client.get()));
  const started = Date.now();
  assert.equal(await c.rst(1, 3000), E.CANCEL);
  assert.ok(Date.now() - started >= 250, 'not before the timeout');
});

test('an idle connection gets GOAWAY NO_ERROR after idleTimeout, then closes', async (t) => {
  const s = await startH2((_req, res) => res.end('x'), { http2: { idleTimeout: 300 } });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  c.send(c.headers(1, H2Client.get()));
  await c.response(1);
  const g = await c.goaway(3000);
  assert.equal(g.code, E.NO_ERROR);
  assert.equal(g.last, 1);
  assert.ok(await c.closedWithin());
});

test('a request body that stops arriving: 408 after requestTimeout', async (t) => {
  const s = await startH2(async (req, res) => res.end(String((await req.body()).length)), {
    requestTimeout: 300,
  });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  c.send(c.headers(1, POST, false), frame(T.DATA, 0, 1, 'part'));
  const r = await c.response(1, 3000);
  assert.equal(r.status, 408);
});

test('SETTINGS never acknowledged: GOAWAY SETTINGS_TIMEOUT', async (t) => {
  const s = await startH2((_req, res) => res.end('x'), { http2: { settingsTimeout: 300 } });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port); // the test client never acknowledges the server's SETTINGS
  t.after(() => c.close());
  assert.equal((await c.goaway(3000)).code, E.SETTINGS_TIMEOUT);
});

test('acknowledged SETTINGS: no timeout', async (t) => {
  const s = await startH2((_req, res) => res.end('x'), { http2: { settingsTimeout: 200 } });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  c.send(frame(T.SETTINGS, F.ACK, 0));
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(
    c.frames.some((f) => f.type === T.GOAWAY),
    false,
  );
});

test('a body over maxBodySize: 413 on the stream, the connection goes on', async (t) => {
  const s = await startH2(async (req, res) => res.end(String((await req.body()).length)), {
    maxBodySize: 1000,
  });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  c.send(c.headers(1, POST, false), frame(T.DATA, 0, 1, Buffer.alloc(1500)));
  assert.equal((await c.response(1)).status, 413);
  c.send(c.headers(3, POST, false), frame(T.DATA, F.END_STREAM, 3, Buffer.alloc(10)));
  assert.equal((await c.response(3)).body, '10');
});

test('a declared content-length over maxBodySize: 413 before any DATA', async (t) => {
  const s = await startH2(async (req, res) => res.end(String((await req.body()).length)), {
    maxBodySize: 1000,
  });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  c.send(c.headers(1, [...POST, ['content-length', '5000']], false));
  assert.equal((await c.response(1)).status, 413);
});

test('shutdown: GOAWAY NO_ERROR naming the last stream; the stream in flight completes', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const s = await startH2(async (_req, res) => {
    await gate;
    res.end('finished');
  });
  const c = await H2Client.connect(s.port);
  try {
    c.send(c.headers(1, H2Client.get()));
    await new Promise((r) => setTimeout(r, 50));
    const stopping = s.engine.stop();
    const g = await c.goaway();
    assert.equal(g.code, E.NO_ERROR);
    assert.equal(g.last, 1);
    release();
    assert.equal((await c.response(1)).body, 'finished');
    await stopping;
    assert.ok(await c.closedWithin());
  } finally {
    c.close();
  }
});
