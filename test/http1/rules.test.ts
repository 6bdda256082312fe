// Every RFC 9112 rule that protects users, sent as bad bytes over a real socket with the exact answer checked:
// the status, `connection: close`, and the server closing. Good variants next to them must pass.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { raw, responses, startHttp } from './support.ts';

let port = 0;
let stop: () => Promise<void>;

before(async () => {
  const s = await startHttp(
    async (req, res) => {
      const body = await req.body();
      res.header('content-type', 'text/plain').end(`ok ${req.method} ${req.target} ${body.length}`);
    },
    {
      maxBodySize: 64 * 1024,
      maxRequestLine: 8 * 1024,
      maxHeaderBytes: 16 * 1024,
      maxHeaders: 100,
    },
  );
  port = s.port;
  stop = () => s.engine.stop({ deadline: 500 });
});
after(() => stop());

/** [name, request bytes, expected status] — the server must answer exactly this and close. */
const REFUSED: [string, string, number][] = [
  // request line
  ['lower-case version', 'GET / http/1.1\r\nHost: a\r\n\r\n', 400],
  ['HTTP/2.0 request line', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
  ['HTTP/1.2', 'GET / HTTP/1.2\r\nHost: a\r\n\r\n', 505],
  ['space in target', 'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['two spaces after method', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['invalid method character', 'G(T / HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['bare LF after request line', 'GET / HTTP/1.1\nHost: a\r\n\r\n', 400],
  ['relative target without slash', 'GET abc HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['asterisk target on GET', 'GET * HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  // Host
  ['missing Host in HTTP/1.1', 'GET / HTTP/1.1\r\nX: y\r\n\r\n', 400],
  ['duplicate Host', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
  // field syntax
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n', 400],
  ['space before colon', 'GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n', 400],
  ['tab before colon', 'GET / HTTP/1.1\r\nHost: a\r\nX\t: y\r\n\r\n', 400],
  ['invalid token character in name', 'GET / HTTP/1.1\r\nHost: a\r\nX(y): z\r\n\r\n', 400],
  ['empty name', 'GET / HTTP/1.1\r\nHost: a\r\n: z\r\n\r\n', 400],
  ['NUL in value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n', 400],
  ['bare CR in value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n', 400],
  ['bare LF ending a field', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\n\r\n', 400],
  ['DEL in value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n', 400],
  // Content-Length
  ['CL with sign', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello', 400],
  ['CL negative', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n', 400],
  ['CL hex', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello', 400],
  ['CL list of equal values', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello', 400],
  ['CL list of different values', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,6\r\n\r\nhello', 400],
  [
    'duplicate CL fields',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello',
    400,
  ],
  ['CL with inner space', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n0123456789', 400],
  ['empty CL', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n', 400],
  // Transfer-Encoding
  [
    'CL and TE together',
    'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    400,
  ],
  [
    'TE and CL together (TE first)',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n',
    400,
  ],
  ['TE in HTTP/1.0', 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
  [
    'TE not ending in chunked',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n',
    400,
  ],
  ['TE gzip only', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n', 400],
  [
    'chunked twice',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n',
    400,
  ],
  [
    'chunked twice in two fields',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    400,
  ],
  [
    'unknown coding before chunked',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
    501,
  ],
  [
    'chunked with parameter',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n',
    400,
  ],
  // chunk syntax
  [
    'chunk size with 0x prefix',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'chunk size with leading space',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'chunk size with trailing space',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'chunk size with sign',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'chunk size not hex',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'empty chunk size',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'huge chunk size',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'bare LF after chunk size',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'chunk longer than its size',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n',
    400,
  ],
  [
    'chunk data without CRLF',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n',
    400,
  ],
  [
    'extension without name',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'extension with space',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5; a=b\r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'extension with unterminated quote',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a="b\r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'extension with CTL in quotes',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a="\x01"\r\nhello\r\n0\r\n\r\n',
    400,
  ],
  [
    'obs-fold in trailer',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n',
    400,
  ],
  [
    'bad trailer name',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX y: a\r\n\r\n',
    400,
  ],
  // request smuggling variants (found by the differential fuzzer against llhttp)
  [
    'empty first chunk-size line (would read as the last chunk)',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n',
    400,
  ],
  [
    'extension-only first chunk line',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n;a\r\n\r\n',
    400,
  ],
  [
    'TE with a trailing empty element',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n',
    400,
  ],
  [
    'TE with a leading empty element',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n',
    400,
  ],
  [
    'empty TE next to chunked',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    400,
  ],
  [
    'TE chunked followed by HTAB',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n',
    400,
  ],
  [
    'Content-Length as a trailer',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n',
    400,
  ],
  [
    'Transfer-Encoding as a trailer',
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n',
    400,
  ],
  ['non-ASCII byte in the target', 'GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n', 400],
  ['CONNECT without a port', 'CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n', 400],
  ['CONNECT with origin-form', 'CONNECT / HTTP/1.1\r\nHost: example.com\r\n\r\n', 400],
  // Expect
  ['unknown expectation', 'POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx', 417],
];

describe('refused requests: status, connection: close, and the connection closed', () => {
  for (const [name, bytes, status] of REFUSED) {
    test(`${name} -> ${status}`, async () => {
      const { text, closed } = await raw(port, bytes);
      const [res] = responses(text);
      assert.ok(res, `no response to ${JSON.stringify(bytes)}`);
      assert.equal(res.status, status, `${name}: ${text.split('\r\n')[0]} / ${res.body}`);
      assert.equal(res.headers.connection, 'close');
      assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
      assert.ok(res.body.startsWith(`${status} `), res.body);
      assert.ok(closed, 'the server closes after refusing');
      assert.equal(responses(text).length, 1, 'nothing after the refusal is answered');
    });
  }
});

describe('limits', () => {
  test('request line over 8 KiB -> 414 (before the rest of the head arrives)', async () => {
    const { text, closed } = await raw(port, `GET /${'a'.repeat(9000)}`);
    assert.equal(responses(text)[0]!.status, 414);
    assert.ok(closed);
  });

  test('request line at the limit is served', async () => {
    const path = `/${'a'.repeat(8 * 1024 - 20)}`;
    const { text } = await raw(port, `GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
    assert.equal(responses(text)[0]!.status, 200);
  });

  test('header section over 16 KiB -> 431', async () => {
    const { text, closed } = await raw(
      port,
      `GET / HTTP/1.1\r\nHost: a\r\nX: ${'v'.repeat(17 * 1024)}\r\n\r\n`,
    );
    assert.equal(responses(text)[0]!.status, 431);
    assert.ok(closed);
  });

  test('an endless header section -> 431 without waiting for its end', async () => {
    const { text, closed } = await raw(port, `GET / HTTP/1.1\r\nHost: a\r\nX: ${'v'.repeat(20 * 1024)}`);
    assert.equal(responses(text)[0]!.status, 431);
    assert.ok(closed);
  });

  test('101 header fields -> 431; 99 are fine', async () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: ${i}\r\n`).join('');
    const refused = await raw(port, `GET / HTTP/1.1\r\nHost: a\r\n${many(100)}\r\n`);
    assert.equal(responses(refused.text)[0]!.status, 431);
    const fine = await raw(port, `GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n${many(98)}\r\n`);
    assert.equal(responses(fine.text)[0]!.status, 200);
  });

  test('Content-Length over maxBodySize -> 413 before the body is read', async () => {
    const { text, closed } = await raw(
      port,
      `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${1024 * 1024}\r\n\r\n`,
    );
    assert.equal(responses(text)[0]!.status, 413);
    assert.ok(closed);
  });

  test('Content-Length with 16+ digits -> 413', async () => {
    const { text } = await raw(
      port,
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n',
    );
    assert.equal(responses(text)[0]!.status, 413);
  });

  test('a chunked body growing past maxBodySize -> 413', async () => {
    const chunk = `${(40 * 1024).toString(16)}\r\n${'x'.repeat(40 * 1024)}\r\n`;
    const { text, closed } = await raw(port, [
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n',
      chunk,
      chunk,
      '0\r\n\r\n',
    ]);
    assert.equal(responses(text)[0]!.status, 413);
    assert.ok(closed);
  });
});

describe('accepted forms', () => {
  const ACCEPTED: [string, string, string][] = [
    [
      'absolute-form target',
      'GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n',
      'ok GET http://example.com/p?q=1 0',
    ],
    ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n', 'ok OPTIONS * 0'],
    ['leading empty line', '\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n', 'ok GET / 0'],
    ['HTTP/1.0 without Host', 'GET / HTTP/1.0\r\n\r\n', 'ok GET / 0'],
    [
      'chunked with extensions',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c="d e"\r\nhello\r\n0;last\r\n\r\n',
      'ok POST / 5',
    ],
    [
      'chunked with upper-case hex',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n',
      'ok POST / 10',
    ],
    [
      'chunk size with leading zeros',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n0\r\n\r\n',
      'ok POST / 5',
    ],
    [
      'trailers',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nA: b\r\nC: d\r\n\r\n',
      'ok POST / 1',
    ],
    [
      'field value with obs-text and tabs',
      'GET / HTTP/1.1\r\nHost: a\r\nX: \tcaf\xe9 \t\r\n\r\n',
      'ok GET / 0',
    ],
    ['Content-Length: 0', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n', 'ok POST / 0'],
    [
      'Content-Length with leading zeros',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0000000000000005\r\n\r\nhello',
      'ok POST / 5',
    ],
    [
      'TE with spaces around the element',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  chunked \r\n\r\n1\r\nx\r\n0\r\n\r\n',
      'ok POST / 1',
    ],
  ];
  for (const [name, bytes, body] of ACCEPTED) {
    test(name, async () => {
      const { text } = await raw(port, bytes);
      const [res] = responses(text);
      assert.equal(res?.status, 200, text);
      assert.equal(res.body, body);
    });
  }
});
