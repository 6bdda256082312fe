// The head parser fed in random splits, with the unconsumed bytes moved between calls the way a connection
// moves them (copied to the start of a new slab, or left where they are), must judge every head exactly as
// it does in one piece: same outcome, same status, same fields at the right offsets.
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { type Conn, type EventLoop, serve } from 'netloom';
import { ClientConnection, clientHandler, HEAD_ERROR, HeadParser, NEED_MORE } from 'netloom/http1';
import { prng } from '../helpers.ts';
import { raw, responses, startHttp } from './support.ts';

const LIMITS = { maxStartLine: 64, maxHeaderBytes: 200, maxHeaders: 6, requireHost: true };

const HEADS = [
  'GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nX-B: 22\r\n\r\n',
  '\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\rX\r\n\r\n',
  'GET /a HTTP/1.1\r\nHost: x\nX: 1\r\n\r\n',
  'GET /a HTTP/1.1\r\nHost: x\r\n X: 1\r\n\r\n',
  `GET /${'a'.repeat(70)} HTTP/1.1\r\nHost: x\r\n\r\n`,
  `GET /a HTTP/1.1\r\nHost: x\r\nX: ${'v'.repeat(210)}\r\n\r\n`,
  `GET /a HTTP/1.1\r\nHost: x\r\nX: ${'v'.repeat(168)}\r\n\r\n`, // field lines of exactly 200 bytes
  'GET /a HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\n\r\n',
  'POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n',
  'GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n',
  'GET /a HTTP/1.0\r\n\r\n',
  'GET /a HTTP/2.0\r\nHost: x\r\n\r\n',
  `${'\r\n'.repeat(40)}GET /a HTTP/1.1\r\nHost: x\r\n\r\n`, // empty lines count toward the start line
];

function judge(p: HeadParser, r: number, buf: Buffer): string {
  if (r === HEAD_ERROR) return `error ${p.errorStatus} ${p.errorReason}`;
  if (r === NEED_MORE) return 'need more';
  const fields: string[] = [];
  for (let k = 0; k < p.fieldCount; k++) fields.push(`${p.name(buf, k)}=${p.value(buf, k)}`);
  return `ok ${r} ${p.method} ${buf.toString('latin1', p.targetStart, p.targetEnd)} cl=${p.contentLength} ${fields.join(',')}`;
}

test('a head split and moved at random is judged as it is whole', () => {
  const rand = prng(20261201);
  const prefix = Buffer.from('GET /p HTTP/1.1\r\nHost: p\r\n\r\n', 'latin1');
  for (const text of HEADS) {
    const whole = Buffer.from(text, 'latin1');
    const one = new HeadParser('request', LIMITS);
    const expected = judge(one, one.parse(whole, 0, whole.length), whole);
    for (let trial = 0; trial < 300; trial++) {
      const p = new HeadParser('request', LIMITS);
      // The head may start after a pipelined request in the same buffer.
      let buf: Buffer = rand() < 0.5 ? Buffer.from(prefix) : Buffer.alloc(0);
      let start = buf.length;
      let end = start;
      let got = 'need more';
      let pos = 0;
      while (pos < whole.length && got === 'need more') {
        const n = 1 + Math.floor(rand() * Math.min(12, whole.length - pos));
        const chunk = whole.subarray(pos, pos + n);
        pos += n;
        const move = rand() < 0.5 && start > 0;
        const next = Buffer.alloc((move ? end - start : end) + n + 32, 0x5a);
        if (move) {
          buf.copy(next, 0, start, end);
          end -= start;
          start = 0;
        } else {
          buf.copy(next, 0, 0, end);
        }
        chunk.copy(next, end);
        end += n;
        buf = next;
        const r = p.parse(buf, start, end);
        got = judge(p, r, buf);
        if (r > 0) got = got.replace(/^ok \d+/, `ok ${r}`);
      }
      assert.equal(got, expected, `${JSON.stringify(text)} trial ${trial}`);
    }
  }
});

test('a pipelined head resumed over reads after its bytes moved is parsed right (server)', async () => {
  const { engine, port } = await startHttp((req, res) => res.end(`${req.target} ${req.header('x-abc')}`));
  try {
    const r = await raw(port, [
      'GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /second HTTP/1.1\r\nHost: b\r\nX-A',
      'bc', // no LF: the partial head is only rebased
      ': 1\r\n\r\n',
    ]);
    assert.deepEqual(
      responses(r.text).map((x) => x.body),
      ['/first undefined', '/second 1'],
    );
  } finally {
    await engine.stop();
  }
});

test('a response head after an interim one, resumed over reads, is parsed right (client)', async () => {
  const upstream = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', async () => {
      s.write('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Upstream: hello\r\nX-');
      await new Promise((r) => setTimeout(r, 40));
      s.write('b');
      await new Promise((r) => setTimeout(r, 40));
      s.write('c: 1\r\nContent-Length: 2\r\n\r\nhi');
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  let loop!: EventLoop;
  const engine = await serve(
    (l: EventLoop) => {
      loop = l;
      return {};
    },
    { loops: 1 },
  );
  try {
    const seen = await new Promise<string>((resolve) => {
      const port = (upstream.address() as net.AddressInfo).port;
      const conn = loop.dial(`127.0.0.1:${port}`, clientHandler({})) as Conn<ClientConnection>;
      const client = new ClientConnection(conn);
      conn.context = client;
      client.begin('GET', {
        onHead(r) {
          const pairs: string[] = [];
          for (let k = 0; k < r.headerCount; k++) pairs.push(`${r.fieldName(k)}=${r.fieldValue(k)}`);
          resolve(`${r.status} ${pairs.join(' ')}`);
        },
        onBody() {},
        onEnd() {},
        onError(err) {
          resolve(`error ${err.message}`);
        },
      });
      conn.write('GET / HTTP/1.1\r\nHost: up\r\nExpect: 100-continue\r\n\r\n');
    });
    assert.equal(seen, '200 X-Upstream=hello X-bc=1 Content-Length=2');
  } finally {
    await engine.stop();
    upstream.close();
  }
});
