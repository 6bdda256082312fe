// RFC 9113 §3-8 over a real socket, one rule a test: the bytes a broken or hostile client sends, and the
// exact answer (a stream error is RST_STREAM with its code, a connection error GOAWAY with its code).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { raw } from '../http1/support.ts';
import { E, F, frame, H2Client, PREFACE, settings, startH2, T, u32 } from './support.ts';

let port = 0;
let stop: () => Promise<void>;
before(async () => {
  const s = await startH2(async (req, res) => {
    if (req.method === 'POST') {
      const body = await req.body();
      res.header('x-trailers', JSON.stringify(req.trailers)).end(`got ${body.length}`);
      return;
    }
    res.header('content-type', 'text/plain').end(`ok ${req.path}`);
  });
  port = s.port;
  stop = () => s.engine.stop();
});
after(() => stop());

async function connectionError(bytes: Buffer[], code: number, handshake = true) {
  const c = await H2Client.connect(port, handshake);
  try {
    c.send(...bytes);
    const g = await c.goaway();
    assert.equal(g.code, code, `GOAWAY ${g.code} (${g.debug}), expected ${code}`);
    assert.ok(await c.closedWithin(), 'the connection closes after GOAWAY');
    return g;
  } finally {
    c.close();
  }
}

async function streamError(make: (c: H2Client) => Buffer[], stream: number, code: number) {
  const c = await H2Client.connect(port);
  try {
    c.send(...make(c));
    assert.equal(await c.rst(stream), code);
    // The connection goes on: a next request is served.
    c.send(c.headers(stream + 2, H2Client.get('/after')));
    const r = await c.response(stream + 2);
    assert.equal(r.body, 'ok /after');
  } finally {
    c.close();
  }
}

/**
 * What a server whose handler never answers says first to `make`'s bytes: the code of its first
 * RST_STREAM (on `stream`) or GOAWAY, and which it was.
 */
async function stalledAnswer(make: (c: H2Client) => Buffer[]): Promise<{ rst: boolean; code: number }> {
  const slow = await startH2(() => new Promise(() => {}));
  const c = await H2Client.connect(slow.port);
  try {
    c.send(...make(c));
    const f = await c.until((x) => x.type === T.RST_STREAM || x.type === T.GOAWAY);
    return f.type === T.RST_STREAM
      ? { rst: true, code: f.payload.readUInt32BE(0) }
      : { rst: false, code: f.payload.readUInt32BE(4) };
  } finally {
    c.close();
    await slow.engine.stop();
  }
}

const POST_HEAD: [string, string][] = [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':authority', 'x'],
  [':path', '/p'],
];

describe('connection start (§3.4)', () => {
  test('a request served, then another on the same connection', async () => {
    const c = await H2Client.connect(port);
    c.send(c.headers(1, H2Client.get('/one')));
    const r = await c.response(1);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok /one');
    c.send(c.headers(3, H2Client.get('/two')));
    assert.equal((await c.response(3)).body, 'ok /two');
    c.close();
  });

  test('the server preface is SETTINGS with MAX_CONCURRENT_STREAMS 100', async () => {
    const c = await H2Client.connect(port);
    const s = await c.until((f) => f.type === T.SETTINGS && f.flags === 0);
    const pairs = new Map<number, number>();
    for (let i = 0; i < s.payload.length; i += 6)
      pairs.set(s.payload.readUInt16BE(i), s.payload.readUInt32BE(i + 2));
    assert.equal(pairs.get(3), 100);
    c.close();
  });

  test('a first frame other than SETTINGS: PROTOCOL_ERROR', async () => {
    await connectionError([PREFACE, frame(T.PING, 0, 0, Buffer.alloc(8))], E.PROTOCOL_ERROR, false);
  });

  test('bytes that leave the preface on a cleartext port are HTTP/1.1: an HTTP/1.1 error, then close', async () => {
    const r = await raw(port, 'PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n');
    assert.match(r.text, /^HTTP\/1\.1 (400|505) /);
    assert.ok(r.closed);
  });

  test('HTTP/1.1 on the same port is still HTTP/1.1; Upgrade: h2c is not honoured', async () => {
    const r = await raw(
      port,
      'GET /h1 HTTP/1.1\r\nhost: x\r\nconnection: upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n',
    );
    assert.match(r.text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(r.text, /ok \/h1$/);
  });
});

describe('frame sizes and stream ids (§4, §5.1.1)', () => {
  test('a frame over SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR', async () => {
    await connectionError([frame(T.HEADERS, F.END_HEADERS, 1, Buffer.alloc(16_385))], E.FRAME_SIZE_ERROR);
  });
  test('DATA on stream 0: PROTOCOL_ERROR', async () => {
    await connectionError([frame(T.DATA, 0, 0, 'x')], E.PROTOCOL_ERROR);
  });
  test('HEADERS on an even stream: PROTOCOL_ERROR', async () => {
    const c = await H2Client.connect(port);
    c.send(c.headers(2, H2Client.get()));
    assert.equal((await c.goaway()).code, E.PROTOCOL_ERROR);
    c.close();
  });
  test('a stream id below one already used: PROTOCOL_ERROR', async () => {
    const c = await H2Client.connect(port);
    c.send(c.headers(5, H2Client.get()));
    await c.response(5);
    c.send(c.headers(3, H2Client.get()));
    assert.equal((await c.goaway()).code, E.PROTOCOL_ERROR);
    c.close();
  });
  test('DATA on an idle stream: PROTOCOL_ERROR', async () => {
    await connectionError([frame(T.DATA, F.END_STREAM, 7, 'x')], E.PROTOCOL_ERROR);
  });
  test('RST_STREAM on an idle stream: PROTOCOL_ERROR', async () => {
    await connectionError([frame(T.RST_STREAM, 0, 9, u32(8))], E.PROTOCOL_ERROR);
  });
  test('WINDOW_UPDATE on an idle stream: PROTOCOL_ERROR', async () => {
    await connectionError([frame(T.WINDOW_UPDATE, 0, 9, u32(100))], E.PROTOCOL_ERROR);
  });
  test('CONTINUATION without HEADERS: PROTOCOL_ERROR', async () => {
    await connectionError([frame(T.CONTINUATION, F.END_HEADERS, 1, Buffer.alloc(0))], E.PROTOCOL_ERROR);
  });
  test('a frame of another stream inside a header block: PROTOCOL_ERROR', async () => {
    const c = await H2Client.connect(port);
    const block = c.block(H2Client.get());
    c.send(frame(T.HEADERS, F.END_STREAM, 1, block.subarray(0, 3)), frame(T.PING, 0, 0, Buffer.alloc(8)));
    assert.equal((await c.goaway()).code, E.PROTOCOL_ERROR);
    c.close();
  });
  test('a header block split over CONTINUATION frames is one request', async () => {
    const c = await H2Client.connect(port);
    const block = c.block(H2Client.get('/split', [['x-long', 'v'.repeat(300)]]));
    c.send(
      frame(T.HEADERS, F.END_STREAM, 1, block.subarray(0, 10)),
      frame(T.CONTINUATION, 0, 1, block.subarray(10, 100)),
      frame(T.CONTINUATION, F.END_HEADERS, 1, block.subarray(100)),
    );
    assert.equal((await c.response(1)).body, 'ok /split');
    c.close();
  });
  test('PUSH_PROMISE from a client: PROTOCOL_ERROR', async () => {
    await connectionError([frame(T.PUSH_PROMISE, F.END_HEADERS, 1, u32(2))], E.PROTOCOL_ERROR);
  });
  test('an unknown frame type is ignored', async () => {
    const c = await H2Client.connect(port);
    c.send(frame(0x42, 0xff, 1, 'whatever'), c.headers(1, H2Client.get('/u')));
    assert.equal((await c.response(1)).body, 'ok /u');
    c.close();
  });
  test('an open stream that depends on itself: PROTOCOL_ERROR on the stream', async () => {
    const a = await stalledAnswer((c) => [
      c.headers(1, H2Client.get()),
      frame(T.PRIORITY, 0, 1, Buffer.from([0, 0, 0, 1, 16])),
    ]);
    assert.deepEqual(a, { rst: true, code: E.PROTOCOL_ERROR });
  });
  test('an idle stream that depends on itself: PROTOCOL_ERROR on the connection (no RST on idle, §5.1)', async () => {
    await connectionError([frame(T.PRIORITY, 0, 1, Buffer.from([0, 0, 0, 1, 16]))], E.PROTOCOL_ERROR);
  });
  test('PRIORITY of a wrong size on an open stream: FRAME_SIZE_ERROR on the stream', async () => {
    const a = await stalledAnswer((c) => [
      c.headers(1, H2Client.get()),
      frame(T.PRIORITY, 0, 1, Buffer.alloc(4)),
    ]);
    assert.deepEqual(a, { rst: true, code: E.FRAME_SIZE_ERROR });
  });
  test('PRIORITY of a wrong size on an idle stream: FRAME_SIZE_ERROR on the connection', async () => {
    await connectionError([frame(T.PRIORITY, 0, 1, Buffer.alloc(4))], E.FRAME_SIZE_ERROR);
  });
});

describe('SETTINGS, PING, GOAWAY (§6.5, §6.7, §6.8)', () => {
  test('SETTINGS of a length not a multiple of 6: FRAME_SIZE_ERROR', async () => {
    await connectionError([frame(T.SETTINGS, 0, 0, Buffer.alloc(5))], E.FRAME_SIZE_ERROR);
  });
  test('a SETTINGS ack with a payload: FRAME_SIZE_ERROR', async () => {
    await connectionError([frame(T.SETTINGS, F.ACK, 0, Buffer.alloc(6))], E.FRAME_SIZE_ERROR);
  });
  test('SETTINGS on a stream: PROTOCOL_ERROR', async () => {
    await connectionError([frame(T.SETTINGS, 0, 1, Buffer.alloc(0))], E.PROTOCOL_ERROR);
  });
  test('SETTINGS_ENABLE_PUSH of 2: PROTOCOL_ERROR', async () => {
    await connectionError([settings([[2, 2]])], E.PROTOCOL_ERROR);
  });
  test('SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1: FLOW_CONTROL_ERROR', async () => {
    await connectionError([settings([[4, 2 ** 31]])], E.FLOW_CONTROL_ERROR);
  });
  test('SETTINGS_MAX_FRAME_SIZE below 16384: PROTOCOL_ERROR', async () => {
    await connectionError([settings([[5, 16_383]])], E.PROTOCOL_ERROR);
  });
  test('SETTINGS are acknowledged, unknown ones ignored', async () => {
    const c = await H2Client.connect(port);
    const before = c.frames.length;
    c.send(settings([[0x99, 7]]));
    await c.until((f) => f.type === T.SETTINGS && f.flags === F.ACK && c.frames.indexOf(f) >= before);
    c.close();
  });
  test('PING is answered with the same payload, ACK set', async () => {
    const c = await H2Client.connect(port);
    c.send(frame(T.PING, 0, 0, Buffer.from('12345678')));
    const p = await c.until((f) => f.type === T.PING);
    assert.equal(p.flags, F.ACK);
    assert.equal(p.payload.toString(), '12345678');
    c.close();
  });
  test('PING of 7 octets: FRAME_SIZE_ERROR', async () => {
    await connectionError([frame(T.PING, 0, 0, Buffer.alloc(7))], E.FRAME_SIZE_ERROR);
  });
  test('PING on a stream: PROTOCOL_ERROR', async () => {
    await connectionError([frame(T.PING, 0, 1, Buffer.alloc(8))], E.PROTOCOL_ERROR);
  });
  test('a client GOAWAY: the connection ends once its streams are done', async () => {
    const c = await H2Client.connect(port);
    c.send(frame(T.GOAWAY, 0, 0, Buffer.concat([u32(0), u32(0)])));
    assert.ok(await c.closedWithin());
    c.close();
  });
});

describe('flow control (§5.2, §6.9)', () => {
  test('WINDOW_UPDATE of 0 on the connection: PROTOCOL_ERROR', async () => {
    await connectionError([frame(T.WINDOW_UPDATE, 0, 0, u32(0))], E.PROTOCOL_ERROR);
  });
  test('WINDOW_UPDATE of 0 on a stream: PROTOCOL_ERROR on the stream', async () => {
    const c = await H2Client.connect(port);
    c.send(
      c.headers(
        1,
        [
          [':method', 'POST'],
          [':scheme', 'http'],
          [':authority', 'x'],
          [':path', '/p'],
        ],
        false,
      ),
    );
    c.send(frame(T.WINDOW_UPDATE, 0, 1, u32(0)));
    assert.equal(await c.rst(1), E.PROTOCOL_ERROR);
    c.close();
  });
  test('a connection window past 2^31-1: FLOW_CONTROL_ERROR', async () => {
    await connectionError([frame(T.WINDOW_UPDATE, 0, 0, u32(2 ** 31 - 1))], E.FLOW_CONTROL_ERROR);
  });
  test('WINDOW_UPDATE of a wrong size: FRAME_SIZE_ERROR', async () => {
    await connectionError([frame(T.WINDOW_UPDATE, 0, 0, Buffer.alloc(3))], E.FRAME_SIZE_ERROR);
  });
  test('DATA past the stream window: FLOW_CONTROL_ERROR', async () => {
    const slow = await startH2(() => new Promise(() => {}));
    const c = await H2Client.connect(slow.port);
    after(() => slow.engine.stop());
    c.send(
      c.headers(
        1,
        [
          [':method', 'POST'],
          [':scheme', 'http'],
          [':authority', 'x'],
          [':path', '/p'],
        ],
        false,
      ),
    );
    const chunks: Buffer[] = [];
    for (let i = 0; i < 5; i++) chunks.push(frame(T.DATA, 0, 1, Buffer.alloc(16_384)));
    c.send(...chunks); // 81,920 octets into a window of 65,535
    const rst = c.until((f) => f.type === T.RST_STREAM || f.type === T.GOAWAY);
    const f = await rst;
    assert.equal(
      f.type === T.RST_STREAM ? f.payload.readUInt32BE(0) : f.payload.readUInt32BE(4),
      E.FLOW_CONTROL_ERROR,
    );
    c.close();
  });
  test('a response larger than the client window waits for WINDOW_UPDATE, then completes', async () => {
    const big = await startH2((_req, res) => res.end(Buffer.alloc(200_000, 0x62)));
    try {
      const c = await H2Client.connect(big.port, true, [[4, 1000]]);
      c.send(c.headers(1, H2Client.get()));
      await c.until((f) => f.type === T.DATA);
      await new Promise((r) => setTimeout(r, 50));
      const got = c.frames.filter((f) => f.type === T.DATA).reduce((n, f) => n + f.payload.length, 0);
      assert.equal(got, 1000, 'no more than the stream window');
      c.send(frame(T.WINDOW_UPDATE, 0, 1, u32(300_000)), frame(T.WINDOW_UPDATE, 0, 0, u32(300_000)));
      const r = await c.response(1);
      assert.equal(r.body.length, 200_000);
      c.close();
    } finally {
      await big.engine.stop();
    }
  });
  test('SETTINGS_INITIAL_WINDOW_SIZE raised mid-stream applies to open streams', async () => {
    const big = await startH2((_req, res) => res.end(Buffer.alloc(50_000, 0x62)));
    try {
      const c = await H2Client.connect(big.port, true, [[4, 0]]);
      c.send(c.headers(1, H2Client.get()));
      await c.until((f) => f.type === T.HEADERS && f.stream === 1);
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(c.frames.filter((f) => f.type === T.DATA).length, 0, 'window 0: no DATA');
      c.send(settings([[4, 65_535]]));
      const r = await c.response(1);
      assert.equal(r.body.length, 50_000);
      c.close();
    } finally {
      await big.engine.stop();
    }
  });
});

describe('stream states (§5.1)', () => {
  test('DATA after END_STREAM: STREAM_CLOSED', async () => {
    const a = await stalledAnswer((c) => [c.headers(1, H2Client.get()), frame(T.DATA, 0, 1, 'late')]);
    assert.equal(a.code, E.STREAM_CLOSED);
  });
  test('HEADERS after END_STREAM (not trailers): STREAM_CLOSED, the HPACK state kept', async () => {
    const a = await stalledAnswer((c) => [c.headers(1, H2Client.get()), c.headers(1, [['x-late', 'yes']])]);
    assert.equal(a.code, E.STREAM_CLOSED);
  });
  test('DATA on a stream the client reset: STREAM_CLOSED', async () => {
    const a = await stalledAnswer((c) => [
      c.headers(1, POST_HEAD, false),
      frame(T.RST_STREAM, 0, 1, u32(E.CANCEL)),
      frame(T.DATA, 0, 1, 'after'),
    ]);
    assert.equal(a.code, E.STREAM_CLOSED);
  });
  test('trailers without END_STREAM: PROTOCOL_ERROR on the stream', async () => {
    await streamError(
      (c) => [
        c.headers(
          1,
          [
            [':method', 'POST'],
            [':scheme', 'http'],
            [':authority', 'x'],
            [':path', '/p'],
          ],
          false,
        ),
        frame(T.DATA, 0, 1, 'abc'),
        c.headers(1, [['x-t', '1']], false),
      ],
      1,
      E.PROTOCOL_ERROR,
    );
  });
  test('request trailers reach the handler', async () => {
    const c = await H2Client.connect(port);
    c.send(
      c.headers(
        1,
        [
          [':method', 'POST'],
          [':scheme', 'http'],
          [':authority', 'x'],
          [':path', '/p'],
          ['te', 'trailers'],
        ],
        false,
      ),
      frame(T.DATA, 0, 1, 'abcd'),
      c.headers(1, [['x-checksum', '42']]),
    );
    const r = await c.response(1);
    assert.equal(r.body, 'got 4');
    assert.deepEqual(JSON.parse(r.fields.find(([n]) => n === 'x-trailers')![1]), [['x-checksum', '42']]);
    c.close();
  });
});

describe('malformed requests (§8.1.1, §8.2, §8.3): PROTOCOL_ERROR on the stream', () => {
  const base: [string, string][] = [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':authority', 'x'],
    [':path', '/'],
  ];
  const cases: [string, [string, string][]][] = [
    ['an upper-case field name', [...base, ['X-Upper', '1']]],
    ['no :path', base.filter(([n]) => n !== ':path')],
    ['no :method', base.filter(([n]) => n !== ':method')],
    ['no :scheme', base.filter(([n]) => n !== ':scheme')],
    ['an empty :path', [...base.filter(([n]) => n !== ':path'), [':path', '']]],
    ['a second :path', [...base, [':path', '/again']]],
    ['an unknown pseudo-header', [...base, [':foo', 'bar']]],
    ['a response pseudo-header', [...base, [':status', '200']]],
    ['a pseudo-header after a regular field', [...base.slice(0, 3), ['accept', '*/*'], [':path', '/']]],
    ['connection: keep-alive', [...base, ['connection', 'keep-alive']]],
    ['transfer-encoding: chunked', [...base, ['transfer-encoding', 'chunked']]],
    ['upgrade', [...base, ['upgrade', 'h2c']]],
    ['te: gzip', [...base, ['te', 'gzip']]],
    ['a value with a line feed', [...base, ['x-a', 'a\nb']]],
    ['a value with a leading space', [...base, ['x-a', ' a']]],
    ['host differing from :authority', [...base, ['host', 'other']]],
    ['a :path not starting with /', [...base.filter(([n]) => n !== ':path'), [':path', 'relative']]],
    [
      'CONNECT with :path',
      [
        [':method', 'CONNECT'],
        [':authority', 'x:443'],
        [':path', '/'],
      ],
    ],
  ];
  for (const [name, fields] of cases) {
    test(name, async () => {
      await streamError((c) => [c.headers(1, fields)], 1, E.PROTOCOL_ERROR);
    });
  }
  test('content-length above the DATA sent', async () => {
    await streamError(
      (c) => [
        c.headers(1, [[':method', 'POST'], ...base.slice(1), ['content-length', '10']], false),
        frame(T.DATA, F.END_STREAM, 1, 'abc'),
      ],
      1,
      E.PROTOCOL_ERROR,
    );
  });
  test('DATA past content-length', async () => {
    await streamError(
      (c) => [
        c.headers(1, [[':method', 'POST'], ...base.slice(1), ['content-length', '2']], false),
        frame(T.DATA, F.END_STREAM, 1, 'abc'),
      ],
      1,
      E.PROTOCOL_ERROR,
    );
  });
  test('a header block that does not decode: COMPRESSION_ERROR', async () => {
    await connectionError(
      [frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))],
      E.COMPRESSION_ERROR,
    );
  });
  test('cookie crumbs read as one cookie', async () => {
    const s = await startH2((req, res) => res.end(String(req.header('cookie'))));
    try {
      const c = await H2Client.connect(s.port);
      c.send(c.headers(1, [...base, ['cookie', 'a=1'], ['cookie', 'b=2']]));
      assert.equal((await c.response(1)).body, 'a=1; b=2');
      c.close();
    } finally {
      await s.engine.stop();
    }
  });
});
