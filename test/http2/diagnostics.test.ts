// diagnostics_channel probes of the HTTP/2 server (issue 16's leftover): one request:start and one end a
// stream (response:finish when its END_STREAM went out, request:abort when it ended before that: a reset,
// an answer stuck behind a closed flow-control window), the server's own answer after the handler started
// ending with its finish, not an abort. Over real sockets, with a frame-level client.
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { test } from 'node:test';
import type {
  Http2RequestAbortMessage,
  Http2RequestStartMessage,
  Http2ResponseFinishMessage,
} from 'netloom/http2';
import { E, F, frame, H2Client, startH2, T, u32 } from './support.ts';

const NAMES = ['netloom:http2:request:start', 'netloom:http2:response:finish', 'netloom:http2:request:abort'];

function record() {
  const seen: string[] = [];
  const handlers = NAMES.map((name) => {
    const h = (m: unknown) => {
      const kind = name.split(':').slice(2).join(':');
      if (kind === 'request:start') {
        const s = m as Http2RequestStartMessage;
        seen.push(`start ${s.stream} ${s.request.method} ${s.request.path}`);
      } else if (kind === 'response:finish') {
        const s = m as Http2ResponseFinishMessage;
        seen.push(`finish ${s.stream} ${s.response.statusCode}`);
      } else {
        const s = m as Http2RequestAbortMessage;
        seen.push(`abort ${s.stream} ${s.error.message}`);
      }
    };
    diagnostics.subscribe(name, h);
    return [name, h] as const;
  });
  return {
    seen,
    off: () => {
      for (const [name, h] of handlers) diagnostics.unsubscribe(name, h);
    },
  };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('two streams on one connection: start then finish each, with its status', async (t) => {
  const probes = record();
  t.after(probes.off);
  const { engine, port } = await startH2((req, res) => {
    res.status(req.path === '/missing' ? 404 : 200).end('hi');
  });
  t.after(() => engine.stop());
  const c = await H2Client.connect(port);
  t.after(() => c.close());
  c.send(c.headers(1, H2Client.get('/a')));
  assert.equal((await c.response(1)).status, 200);
  c.send(c.headers(3, H2Client.get('/missing')));
  assert.equal((await c.response(3)).status, 404);
  await until(() => probes.seen.length >= 4, 'four probes');
  assert.deepEqual(probes.seen, ['start 1 GET /a', 'finish 1 200', 'start 3 GET /missing', 'finish 3 404']);
});

test('a stream the client resets while its handler waits: start, then abort (once, no finish)', async (t) => {
  const probes = record();
  t.after(probes.off);
  let answer: (() => void) | null = null;
  const { engine, port } = await startH2((_req, res) => {
    answer = () => res.end('late');
  });
  t.after(() => engine.stop());
  const c = await H2Client.connect(port);
  t.after(() => c.close());
  c.send(c.headers(1, H2Client.get('/wait')));
  await until(() => answer !== null, 'the handler');
  c.send(frame(T.RST_STREAM, 0, 1, u32(E.CANCEL)));
  await until(() => probes.seen.length >= 2, 'the abort');
  (answer as unknown as () => void)(); // a write after the reset changes nothing
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(probes.seen.length, 2, probes.seen.join('; '));
  assert.equal(probes.seen[0], 'start 1 GET /wait');
  assert.match(probes.seen[1]!, /^abort 1 /);
});

test('an answer ended but held by a closed window, then reset: abort, not finish', async (t) => {
  const probes = record();
  t.after(probes.off);
  const { engine, port } = await startH2((_req, res) => {
    res.end('x'.repeat(100));
  });
  t.after(() => engine.stop());
  // SETTINGS_INITIAL_WINDOW_SIZE 0: the server may send HEADERS but no DATA, so END_STREAM waits.
  const c = await H2Client.connect(port, true, [[0x4, 0]]);
  t.after(() => c.close());
  c.send(c.headers(1, H2Client.get('/held')));
  await c.until((f) => f.type === T.HEADERS && f.stream === 1, 'the response HEADERS');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(probes.seen, ['start 1 GET /held'], 'no finish while END_STREAM waits');
  c.send(frame(T.RST_STREAM, 0, 1, u32(E.CANCEL)));
  await until(() => probes.seen.length >= 2, 'the abort');
  assert.match(probes.seen[1]!, /^abort 1 /);
});

test("the server's own answer after the handler started (a body over the limit): one finish, no abort", async (t) => {
  const probes = record();
  t.after(probes.off);
  const { engine, port } = await startH2(
    async (req, res) => {
      try {
        await req.body();
        res.end('read');
      } catch {
        // the server answers 413 in the handler's place
      }
    },
    { maxBodySize: 16 },
  );
  t.after(() => engine.stop());
  const c = await H2Client.connect(port);
  t.after(() => c.close());
  const fields: [string, string][] = [
    [':method', 'POST'],
    [':scheme', 'http'],
    [':authority', 'localhost'],
    [':path', '/upload'],
  ];
  c.send(c.headers(1, fields, false));
  c.send(frame(T.DATA, F.END_STREAM, 1, Buffer.alloc(64, 0x61)));
  assert.equal((await c.response(1)).status, 413);
  await until(() => probes.seen.length >= 2, 'the end');
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(probes.seen, ['start 1 POST /upload', 'finish 1 413']);
});
