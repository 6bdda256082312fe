// Regression tests for defects a code review reproduced in the HTTP/1.1 server's state machine: HTTP timers
// and parsing running on after an upgrade, keep-alive connections left unread after a paused body, a late
// promise rejection failing the next request, pipelined requests dropped at FIN, and access records of
// refused heads naming the previous request.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type EventHandler, serve, startLogShipper } from 'netloom';
import { server } from 'netloom/http1';
import { waitFor } from '../helpers.ts';
import { get, raw, responses, startHttp } from './support.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw client connection that records what it receives (latin1) and whether the server ended it. */
function open(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  const state = { socket, text: '', ended: false };
  socket.on('data', (d: Buffer) => {
    state.text += d.toString('latin1');
  });
  socket.on('end', () => {
    state.ended = true;
  });
  socket.on('close', () => {
    state.ended = true;
  });
  socket.on('error', () => {});
  return state;
}

/** What followed the first response head (the upgraded protocol's bytes). */
function afterHead(text: string): string {
  const end = text.indexOf('\r\n\r\n');
  return end === -1 ? '' : text.slice(end + 4);
}

/** An upgraded protocol: answers every read with its bytes upper-cased. */
const shout: EventHandler = {
  onTraffic(conn) {
    conn.write(Buffer.from(conn.next().toString('latin1').toUpperCase(), 'latin1'));
  },
};

const UPGRADE = 'GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: shout\r\n\r\n';

describe('upgrades', () => {
  test('after res.upgrade() no HTTP timer closes the connection', async () => {
    const { engine, port } = await startHttp((_req, res) => res.upgrade(shout), {
      keepAliveTimeout: 150,
      headersTimeout: 200,
    });
    const c = open(port);
    try {
      c.socket.write(UPGRADE);
      await waitFor(() => c.text.includes('\r\n\r\n'), 1000, 'the 101 head');
      assert.match(c.text, /^HTTP\/1\.1 101 /);
      await sleep(400); // past keepAliveTimeout and headersTimeout
      assert.equal(c.ended, false, 'the upgraded connection was closed by an HTTP timer');
      c.socket.write('ping');
      await waitFor(() => afterHead(c.text) === 'PING' || c.ended, 1000, 'the tunnel to answer');
      assert.equal(afterHead(c.text), 'PING');
      assert.equal(c.ended, false);
    } finally {
      c.socket.destroy();
      await engine.stop({ deadline: 100 });
    }
  });

  test('bytes right after the upgrade head go to the new handler, not the HTTP parser', async () => {
    const { engine, port } = await startHttp((_req, res) => res.upgrade(shout), {
      keepAliveTimeout: 150,
      headersTimeout: 200,
    });
    const c = open(port);
    try {
      c.socket.write(Buffer.from(`${UPGRADE}\x81\x05hello`, 'latin1')); // a WebSocket-like frame, same write
      await waitFor(() => afterHead(c.text).length >= 7 || c.ended, 1000, 'the tunnel to answer');
      assert.doesNotMatch(c.text, /HTTP\/1\.1 4\d\d/, 'the new protocol bytes were parsed as HTTP');
      assert.equal(afterHead(c.text), '\x81\x05HELLO');
      await sleep(400); // past keepAliveTimeout and headersTimeout
      c.socket.write('more');
      await waitFor(() => afterHead(c.text).endsWith('MORE') || c.ended, 1000, 'the tunnel to answer again');
      assert.equal(afterHead(c.text), '\x81\x05HELLOMORE');
      assert.equal(c.ended, false);
    } finally {
      c.socket.destroy();
      await engine.stop({ deadline: 100 });
    }
  });
});

describe('keep-alive after bodies', () => {
  test('a body discarded after reading paused for it keeps the connection usable', async () => {
    // Over maxBufferedBody (64 KiB) and under the discard limit (256 KiB): reading pauses while nobody reads
    // the body, then the handler answers without reading it.
    const { engine, port } = await startHttp(
      async (req, res) => {
        if (req.path === '/upload') await sleep(100); // e.g. an auth lookup
        res.end(`answer to ${req.path}\n`);
      },
      { requestTimeout: 3000 },
    );
    const c = open(port);
    try {
      const body = Buffer.alloc(100 * 1024, 0x61);
      c.socket.write(
        Buffer.concat([
          Buffer.from(`POST /upload HTTP/1.1\r\nHost: x\r\ncontent-length: ${body.length}\r\n\r\n`),
          body,
        ]),
      );
      await sleep(20);
      c.socket.write('GET /next HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor(() => c.text.includes('answer to /next') || c.ended, 1500, 'the answer to /next');
      assert.deepEqual(
        responses(c.text).map((r) => [r.status, r.body]),
        [
          [200, 'answer to /upload\n'],
          [200, 'answer to /next\n'],
        ],
      );
      assert.equal(c.ended, false);
    } finally {
      c.socket.destroy();
      await engine.stop({ deadline: 100 });
    }
  });

  test('a body reader pausing on the last chunk does not freeze the next request', async () => {
    const { engine, port } = await startHttp(async (req, res) => {
      if (req.method !== 'POST') {
        res.end(`answer to ${req.path}`);
        return;
      }
      // Like a proxy: pause on every chunk, resume once the chunk is passed on, but only while unfinished.
      let size = 0;
      let ended = false;
      await new Promise<void>((resolve, reject) => {
        req.pipe({
          data(chunk) {
            size += chunk.length;
            setImmediate(() => {
              if (!ended) req.resumeBody();
            });
            return false;
          },
          end() {
            ended = true;
            resolve();
          },
          error: reject,
        });
      });
      res.end(`got ${size} bytes`);
    });
    try {
      const { text } = await raw(
        port,
        [
          'POST /a HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\nhello',
          'GET /b HTTP/1.1\r\nHost: x\r\n\r\n',
        ],
        500,
      );
      assert.deepEqual(
        responses(text).map((r) => [r.status, r.body]),
        [
          [200, 'got 5 bytes'],
          [200, 'answer to /b'],
        ],
      );
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  test('a promise rejected after its response ended does not fail the next request', async () => {
    const { engine, port } = await startHttp(async (req, res) => {
      if (req.path === '/a') {
        res.end('a done\n');
        await sleep(50);
        throw new Error('post-response bookkeeping failed (expected by this test)');
      }
      await sleep(150);
      res.end('b done\n');
    });
    try {
      const { text } = await raw(
        port,
        ['GET /a HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /b HTTP/1.1\r\nHost: x\r\n\r\n'],
        400,
      );
      assert.deepEqual(
        responses(text).map((r) => [r.status, r.body]),
        [
          [200, 'a done\n'],
          [200, 'b done\n'],
        ],
      );
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  test('pipelined requests followed by FIN are all answered before the close', async () => {
    const { engine, port } = await startHttp(async (req, res) => {
      await sleep(20);
      res.end(`answer ${req.path}\n`);
    });
    const c = open(port);
    try {
      c.socket.end(
        'GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n',
      );
      await waitFor(() => c.socket.closed, 2000, 'the server to close');
      assert.deepEqual(
        responses(c.text).map((r) => r.body),
        ['answer /1\n', 'answer /2\n', 'answer /3\n'],
      );
    } finally {
      c.socket.destroy();
      await engine.stop({ deadline: 100 });
    }
  });
});

describe('access log', () => {
  test('a refused head is logged with an empty method and path, never the previous request', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'netloom-regress-')), 'access.ndjson');
    const shipper = await startLogShipper({ sink: { type: 'file', path: file }, compression: 'none' });
    const engine = await serve(
      server((_req, res) => res.end('ok'), { accessLog: true }),
      {
        loops: 1,
        logRing: shipper.ring,
      },
    );
    let stopped = false;
    try {
      const first = await raw(engine.port, 'GET /foo HTTP/9.9\r\nHost: x\r\n\r\n', 300);
      assert.match(first.text, /^HTTP\/1\.1 505 /);
      const second = await raw(engine.port, 'GET /foo HTTP/1.1\r\n\r\n', 300); // no Host
      assert.match(second.text, /^HTTP\/1\.1 400 /);
      const third = await raw(
        engine.port,
        ['GET /ok HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /zz HTTP/9.9\r\nHost: x\r\n\r\n'],
        300,
      );
      assert.deepEqual(
        responses(third.text).map((r) => r.status),
        [200, 505],
      );
      await engine.stop({ deadline: 100 });
      await shipper.stop();
      stopped = true;
      const access = readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .filter((r) => r.kind === 'access');
      assert.deepEqual(
        access.map((r) => [r.status, r.method, r.path]),
        [
          [505, '', ''],
          [400, '', ''],
          [200, 'GET', '/ok'],
          [505, '', ''],
        ],
      );
    } finally {
      if (!stopped) {
        await engine.stop({ deadline: 100 });
        await shipper.stop();
      }
    }
  });
});

/** Status lines in a text of responses. */
const statusLines = (text: string) => text.match(/HTTP\/1\.1 \d{3}[^\r]*/g) ?? [];

describe('pipelined requests after an asynchronous response', () => {
  // The second head was parsed from a slab the arena had already taken back (the discard of the first
  // request's bytes happened outside a traffic turn): its target and fields read as poison or another write.
  const pad = 'p'.repeat(9000); // a 16 KiB slab, the staging slab's class
  const two = (path: string) =>
    'GET /slow HTTP/1.1\r\nhost: x\r\n\r\n' +
    `GET ${path} HTTP/1.1\r\nhost: x\r\nx-token: secret\r\nx-pad: ${pad}\r\n\r\n`;
  for (const poisonViews of [true, false]) {
    test(`the second request reads its own head (poisonViews ${poisonViews})`, async () => {
      const seen: string[] = [];
      const { engine, port } = await startHttp(
        (req, res) => {
          if (req.path === '/slow') {
            setTimeout(() => res.end('first'), 30);
            return;
          }
          const target = req.target;
          res.write(Buffer.alloc(16350, 0x61)); // takes the slab class the head lived in
          seen.push(`${target} ${req.header('x-token')} ${req.header('x-pad')?.length}`);
          res.end();
        },
        {},
        { poisonViews },
      );
      try {
        const out = await raw(port, two('/b'), 300);
        assert.deepEqual(seen, ['/b secret 9000']);
        assert.deepEqual(statusLines(out.text), ['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
      } finally {
        await engine.stop({ deadline: 100 });
      }
    });
  }
});

describe("abort listeners when the server answers in the handler's place", () => {
  test('a body timeout whose onAbort ends the response gets one answer, and the connection closes', async () => {
    const { engine, port } = await startHttp(
      (req, res) => {
        req.onAbort(() => res.end('bye')); // cleanup code: "on abort, end what we have"
      },
      { requestTimeout: 300 },
    );
    try {
      const t0 = Date.now();
      const out = await raw(port, 'POST /poll HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n12345', 1500);
      assert.deepEqual(statusLines(out.text), ['HTTP/1.1 408 Request Timeout']);
      assert.equal(out.closed, true);
      assert.ok(Date.now() - t0 < 1200, 'the connection waited on after the 408');
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  test('a handler that throws after a signal listener that ends the response: 500, then the next request', async () => {
    const { engine, port } = await startHttp((req, res) => {
      if (req.path === '/ok') return res.end('ok');
      req.signal.addEventListener('abort', () => {
        if (!res.finished) res.end('cleanup');
      });
      throw new Error('boom');
    });
    try {
      const out = await raw(
        port,
        'GET /throw HTTP/1.1\r\nhost: x\r\n\r\nGET /ok HTTP/1.1\r\nhost: x\r\n\r\n',
        300,
      );
      const got = responses(out.text);
      assert.deepEqual(
        got.map((r) => r.status),
        [500, 200],
      );
      assert.equal(got[1]!.body, 'ok');
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  test('an onAbort listener that throws is logged; the error answer still goes out', async () => {
    const { engine, port } = await startHttp(
      (req) => {
        req.onAbort(() => {
          throw new Error('listener broke');
        });
      },
      { requestTimeout: 200 },
    );
    try {
      const out = await raw(port, 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nab', 1000);
      assert.deepEqual(statusLines(out.text), ['HTTP/1.1 408 Request Timeout']);
      assert.equal(out.closed, true);
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });
});

describe('chunked bodies and the body deadline', () => {
  const chunkedHead = 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n';

  test('a chunked body sent whole and read after requestTimeout is served', async () => {
    const { engine, port } = await startHttp(
      async (req, res) => {
        await sleep(700);
        res.end(`got ${(await req.body()).toString()}`);
      },
      { requestTimeout: 300 },
    );
    try {
      const out = await raw(port, `${chunkedHead}5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n`, 1200);
      const got = responses(out.text);
      assert.deepEqual(
        got.map((r) => [r.status, r.body]),
        [[200, 'got hello']],
      );
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  test('a chunked body sent in part and read late still gets the 408', async () => {
    const { engine, port } = await startHttp(
      async (req, res) => {
        await sleep(700);
        res.end(`got ${(await req.body()).toString()}`);
      },
      { requestTimeout: 300 },
    );
    try {
      const out = await raw(port, `${chunkedHead}5\r\nhel`, 1500);
      assert.deepEqual(statusLines(out.text), ['HTTP/1.1 408 Request Timeout']);
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  for (const [name, rest] of [
    ['after the last chunk', '0\r\n'],
    ['inside a trailer field', '0\r\nx-trailer: 1'],
    ['after a trailer field', '0\r\nx-trailer: 1\r\n'],
    ['between the last CR and LF', '0\r\n\r'],
  ] as const) {
    test(`a FIN ${name} is a 400 at once, not a 408 at the deadline`, async () => {
      let readerError = '';
      const { engine, port } = await startHttp(
        async (req, res) => {
          try {
            await req.body();
            res.end('complete?');
          } catch (err) {
            readerError = (err as Error).message;
            throw err;
          }
        },
        { requestTimeout: 3000 },
      );
      try {
        const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
        let text = '';
        s.on('data', (d: Buffer) => {
          text += d.toString('latin1');
        });
        s.on('error', () => {});
        const t0 = Date.now();
        s.write(`${chunkedHead}5\r\nhello\r\n`);
        await sleep(30);
        s.end(rest);
        await waitFor(() => text.includes('\r\n\r\n'), 2000, 'an answer');
        assert.ok(Date.now() - t0 < 1000, 'answered at the deadline, not at the FIN');
        assert.deepEqual(statusLines(text), ['HTTP/1.1 400 Bad Request']);
        assert.match(readerError, /client closed before the body was complete/);
        s.destroy();
      } finally {
        await engine.stop({ deadline: 100 });
      }
    });
  }
});

describe('status codes assigned directly', () => {
  for (const code of [1000, 100, 42, 199, 2.5, Number.NaN]) {
    test(`res.statusCode = ${code} is a 500, never on the wire`, async () => {
      const { engine, port } = await startHttp((_req, res) => {
        res.statusCode = code;
        res.end('body');
      });
      try {
        const out = await raw(
          port,
          'GET / HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n',
          300,
        );
        assert.deepEqual(
          responses(out.text).map((r) => r.status),
          [500, 500],
        );
      } finally {
        await engine.stop({ deadline: 100 });
      }
    });
  }
});

describe('empty lines between requests', () => {
  test('a stray CRLF after a request leaves the connection idle: no answer, the keep-alive timeout closes it', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('ok'), {
      headersTimeout: 600,
      keepAliveTimeout: 200,
    });
    try {
      const t0 = Date.now();
      const out = await raw(port, 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nab\r\n', 1500);
      assert.deepEqual(statusLines(out.text), ['HTTP/1.1 200 OK']);
      assert.equal(out.closed, true);
      assert.ok(Date.now() - t0 < 550, 'the headers timeout applied, not the keep-alive timeout');
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  test('a stray CRLF, then a request: the request is served', async () => {
    const { engine, port } = await startHttp((req, res) => res.end(req.path));
    try {
      const out = await raw(
        port,
        ['GET /a HTTP/1.1\r\nhost: x\r\n\r\n\r\n', 'GET /b HTTP/1.1\r\nhost: x\r\n\r\n'],
        300,
      );
      assert.deepEqual(
        responses(out.text).map((r) => r.body),
        ['/a', '/b'],
      );
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  test('a partial request line after a request still gets the headers timeout and a 408', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('ok'), {
      headersTimeout: 300,
      keepAliveTimeout: 5000,
    });
    try {
      const out = await raw(port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n\r\nGET /sl', 1500);
      assert.deepEqual(statusLines(out.text), ['HTTP/1.1 200 OK', 'HTTP/1.1 408 Request Timeout']);
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });
});

test('one server() handler object serves engine after engine: keep-alive survives the first engine stopping', async () => {
  const app = server((_req, res) => res.end('ok'));
  const first = await serve(app, { loops: 1 });
  await first.stop();
  const second = await serve(app, { loops: 1 });
  try {
    const r = await raw(second.port, `${get('/a')}${get('/b')}`);
    const out = responses(r.text);
    assert.equal(out.length, 2);
    assert.equal(out[0]!.headers.connection, undefined, 'not closed as if the second engine were stopping');
  } finally {
    await second.stop();
  }
});
