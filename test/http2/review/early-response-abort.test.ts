// A handler that answers before the request body ended (an auth refusal, an early 200 to an upload): the
// response goes out whole, then the server resets the stream with NO_ERROR (§8.1). But `end()` sets
// `finished` only after sendData/writeHeaders returned, and endSent -> resetStream runs inside them: the
// stream is aborted as if the client had gone away. The handler's onAbort listener runs and req.signal
// aborts (499 "the stream was reset") for a response that completed; over HTTP/1.1 neither happens.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { H2Client, startH2, T } from '../support.ts';

const POST: [string, string][] = [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':authority', 'x'],
  [':path', '/p'],
];

test('answering before the request body ended does not abort the request', async (t) => {
  const events: string[] = [];
  const s = await startH2((req, res) => {
    req.onAbort(() => events.push('onAbort'));
    req.signal.addEventListener('abort', () => events.push(`signal ${String(req.signal.reason?.message)}`));
    res.end('early');
    events.push(`closed=${res.closed}`);
  });
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  c.send(c.headers(1, POST, false)); // the body is still to come
  const r = await c.response(1);
  assert.equal(r.body, 'early');
  await c.until((f) => f.type === T.RST_STREAM && f.stream === 1, 'RST_STREAM NO_ERROR');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(events, ['closed=false']);
});

test('a 408 body timeout: req.signal is aborted with the 408, not a 499 reset', async (t) => {
  let reason: unknown;
  const s = await startH2(
    (req) => {
      req.signal.addEventListener('abort', () => {
        reason = req.signal.reason;
      });
      return new Promise<void>((resolve) => req.signal.addEventListener('abort', () => resolve()));
    },
    { requestTimeout: 300 },
  );
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  c.send(c.headers(1, POST, false));
  const r = await c.response(1);
  assert.equal(r.status, 408);
  assert.equal(
    (reason as { status?: number }).status,
    408,
    `signal reason: ${String((reason as Error)?.message)}`,
  );
});

test('a stream answered early frees its concurrency slot though its handler goes on', async (t) => {
  const s = await startH2(
    async (req, res) => {
      await Promise.resolve(); // e.g. an auth lookup
      res.end(`ok ${req.method}`);
      await new Promise((r) => setTimeout(r, 1500)); // logging, cleanup... after the response
    },
    { http2: { maxConcurrentStreams: 1 } },
  );
  t.after(() => s.engine.stop());
  const c = await H2Client.connect(s.port);
  t.after(() => c.close());
  const next = async (id: number) =>
    Promise.race([
      c.response(id).then((x) => `status ${x.status}`),
      c.rst(id).then((code) => `RST_STREAM ${code}`),
    ]);
  // A GET (request ended) frees the slot once answered: stream 3 is served while 1's handler still runs.
  c.send(c.headers(1, H2Client.get()));
  await c.response(1);
  c.send(c.headers(3, H2Client.get()));
  assert.equal(await next(3), 'status 200');
  await new Promise((r) => setTimeout(r, 1600));
  // A POST answered before its body ended is over too (reset NO_ERROR after the response), but it is
  // counted as a zombie holding its slot until the handler settles: the next request is refused.
  c.send(c.headers(5, POST, false));
  await c.response(5);
  await c.until((f) => f.type === T.RST_STREAM && f.stream === 5, 'RST_STREAM on 5');
  c.send(c.headers(7, H2Client.get()));
  assert.equal(await next(7), 'status 200');
});
