// Defects a review reproduced in the HTTP/1.1 server, each sent over a real socket: a streaming handler
// whose client left, error answers to HEAD, declared lengths not honoured, stale req/res handles, upgrades,
// a body reader left hanging when the response ends first, bodies allocated before they arrive, options
// given as undefined, and bare-LF heads split over reads.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { Action, type Conn, type EventHandler, type EventLoop, type NetloomError, serve } from 'netloom';
import { HttpError, type Request, type Response, server } from 'netloom/http1';
import { waitFor } from '../helpers.ts';
import { get, raw, responses, script, startHttp } from './support.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends a GET and resolves with the whole answer text once one response with a Content-Length is in. */
function fetchText(port: number, path: string, ms = 2000): Promise<string | null> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(null);
    }, ms);
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const m = /content-length: (\d+)/i.exec(text);
      if (end !== -1 && m !== null && text.length >= end + 4 + Number(m[1])) {
        clearTimeout(timer);
        s.destroy();
        resolve(text);
      }
    });
    s.on('error', () => {});
    s.write(get(path));
  });
}

describe('a streaming handler whose client leaves', () => {
  test('write() returns false, drain() rejects with ERR_HTTP_CLOSED, req.signal aborts, the loop stays free', async () => {
    // The server runs on a worker: if its loop spun, this thread would still see the second request time out.
    const worker = new Worker(new URL('../fixtures/streaming-server.ts', import.meta.url));
    const events: Record<string, unknown>[] = [];
    const ready = new Promise<number>((resolve, reject) => {
      worker.on('message', (msg: { port?: number; event?: string }) => {
        if (msg.port !== undefined) resolve(msg.port);
        else events.push(msg as Record<string, unknown>);
      });
      worker.once('error', reject);
    });
    try {
      const port = await ready;
      // A client that reads 10 bytes of the stream and leaves.
      await new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        let got = 0;
        s.on('data', (d: Buffer) => {
          got += d.length;
          if (got >= 10) {
            s.destroy();
            resolve();
          }
        });
        s.on('error', () => {});
        s.write(get('/stream'));
      });
      await waitFor(() => events.length > 0, 3000, 'the streaming loop to end');
      const ended = events[0]!;
      assert.equal(ended.event, 'stream-ended');
      assert.equal(ended.code, 'ERR_HTTP_CLOSED', 'drain() rejected with a typed error');
      assert.equal(ended.isHttpError, true);
      assert.equal(ended.closed, true, 'res.closed');
      assert.equal(ended.aborted, true, 'req.signal aborted');
      assert.equal(ended.reason, 'ERR_HTTP_CLOSED', 'the signal says why');
      assert.equal(ended.aborts, 2, 'every listener of the signal heard it');
      assert.equal(ended.writeAfterClose, false, 'write() after the close returns false');
      // Another request on the same loop is answered at once.
      const text = await fetchText(port, '/other', 1500);
      assert.ok(text !== null, 'a second request on the loop got no answer');
      assert.match(text, /^HTTP\/1\.1 200 [\s\S]*ok \/other$/);
    } finally {
      worker.postMessage({ stop: true });
      await Promise.race([new Promise((r) => worker.once('exit', r)), sleep(2000)]);
      await worker.terminate();
    }
  });

  test('a writer whose every write the kernel takes at once still lets other connections have their turn', async () => {
    const worker = new Worker(new URL('../fixtures/streaming-server.ts', import.meta.url));
    const ready = new Promise<number>((resolve, reject) => {
      worker.on('message', (msg: { port?: number }) => {
        if (msg.port !== undefined) resolve(msg.port);
      });
      worker.once('error', reject);
    });
    const reader = { socket: null as net.Socket | null, bytes: 0 };
    try {
      const port = await ready;
      // A client that reads the endless stream as fast as it can.
      reader.socket = net.connect(port, '127.0.0.1');
      reader.socket.on('data', (d: Buffer) => {
        reader.bytes += d.length;
      });
      reader.socket.on('error', () => {});
      reader.socket.write(get('/stream'));
      await waitFor(() => reader.bytes > 4 * 1024 * 1024, 5000, 'the stream to flow');
      const started = Date.now();
      const text = await fetchText(port, '/other', 2000);
      assert.ok(text !== null, 'a second request got no answer while the stream ran');
      assert.ok(Date.now() - started < 1000, `answered after ${Date.now() - started} ms`);
    } finally {
      reader.socket?.destroy();
      worker.postMessage({ stop: true });
      await Promise.race([new Promise((r) => worker.once('exit', r)), sleep(2000)]);
      await worker.terminate();
    }
  });

  test('req.signal read after the client left is already aborted; a handler awaiting it ends', async () => {
    let observed: { aborted: boolean; code: string | undefined } | null = null;
    const { engine, port } = await startHttp(async (req, res) => {
      await new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (res.closed) {
            clearInterval(check);
            resolve();
          }
        }, 5);
      });
      const signal = req.signal; // first touched after the close
      observed = { aborted: signal.aborted, code: (signal.reason as HttpError | undefined)?.code };
      res.end('never sent');
    });
    try {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.write(get('/'));
      await sleep(50);
      // Gone for good (a reset): a FIN alone is a half-close, after which the client may still read.
      s.resetAndDestroy();
      await waitFor(() => observed !== null, 2000, 'the handler to see the close');
      assert.deepEqual(observed, { aborted: true, code: 'ERR_HTTP_CLOSED' });
    } finally {
      await engine.stop();
    }
  });
});

describe('error answers follow the method and status rules', () => {
  test('a handler throwing on HEAD gets a 500 without a body; the next request on the socket is intact', async () => {
    const { engine, port } = await startHttp((req, res) => {
      if (req.method === 'HEAD') throw new Error('boom');
      res.end(`body of ${req.path}`);
    });
    try {
      const r = await raw(port, `HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n${get('/b')}`);
      const first = r.text.indexOf('\r\n\r\n');
      assert.match(r.text, /^HTTP\/1\.1 500 /);
      // The next response starts right after the first head: no body bytes of the 500 in between.
      assert.match(r.text.slice(first + 4), /^HTTP\/1\.1 200 OK\r\n/);
      assert.ok(r.text.endsWith('body of /b'), r.text);
    } finally {
      await engine.stop();
    }
  });

  test('an async rejection on HEAD: no body either', async () => {
    const { engine, port } = await startHttp(async (req, res) => {
      await sleep(5);
      if (req.method === 'HEAD') throw new HttpError(404, 'no such thing');
      res.end('b');
    });
    try {
      const r = await raw(port, `HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n${get('/b')}`);
      const first = r.text.indexOf('\r\n\r\n');
      assert.match(r.text, /^HTTP\/1\.1 404 /);
      assert.match(r.text.slice(first + 4), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nb$/);
    } finally {
      await engine.stop();
    }
  });

  for (const status of [200, 204, 302, 304, 101, 600, 399]) {
    test(`an HttpError with status ${status} answers 500`, async () => {
      const { engine, port } = await startHttp(() => {
        throw new HttpError(status, 'not an error status');
      });
      try {
        const [res] = responses((await raw(port, get('/'))).text);
        assert.equal(res!.status, 500);
        assert.doesNotMatch(res!.body, /not an error status/);
      } finally {
        await engine.stop();
      }
    });
  }
});

describe('a declared length is enforced', () => {
  function lengthServer(run: (res: Response) => void) {
    const errors: string[] = [];
    return startHttp((req, res) => {
      if (req.path !== '/bad') return res.end(`fine ${req.path}`);
      try {
        run(res);
      } catch (err) {
        errors.push((err as HttpError).code);
        throw err;
      }
    }).then((s) => ({ ...s, errors }));
  }

  for (const [name, run, sent] of [
    [
      'sendHead(5), then 9 bytes',
      (res: Response) => res.sendHead(5) === undefined && res.end('123456789'),
      0,
    ],
    ['sendHead(10), then 3 bytes', (res: Response) => res.sendHead(10) === undefined && res.end('abc'), 3],
    [
      'content-length 5 set, then 8 written',
      (res: Response) => res.header('content-length', 5).write('abcdefgh'),
      0,
    ],
    [
      'content-length 6 set, then 2 streamed',
      (res: Response) => {
        res.header('content-length', 6).write('ab');
        res.end();
      },
      2,
    ],
  ] as const) {
    test(`${name}: ERR_HTTP_CONTENT_LENGTH_MISMATCH, the connection closes, the next request is not read as body`, async () => {
      const s = await lengthServer(run);
      try {
        const r = await raw(s.port, [get('/bad'), get('/after')]);
        assert.equal(r.closed, true, 'the connection was closed');
        assert.deepEqual(s.errors, ['ERR_HTTP_CONTENT_LENGTH_MISMATCH']);
        const end = r.text.indexOf('\r\n\r\n');
        assert.match(r.text, /^HTTP\/1\.1 200 OK\r\n/);
        // Only bytes the head announced went out, and nothing of the next request's answer.
        assert.equal(r.text.length - end - 4, sent, JSON.stringify(r.text));
        assert.doesNotMatch(r.text, /fine \/after/);
      } finally {
        await s.engine.stop();
      }
    });
  }

  test('a declared length honoured keeps the connection', async () => {
    const { engine, port } = await startHttp((req, res) => {
      res.sendHead(4);
      res.write('ab');
      res.end('cd');
      void req;
    });
    try {
      const r = await raw(port, `${get('/1')}${get('/2')}`);
      const all = responses(r.text);
      assert.deepEqual(
        all.map((x) => x.body),
        ['abcd', 'abcd'],
      );
    } finally {
      await engine.stop();
    }
  });
});

describe('stale handles', () => {
  test('a late call on an earlier request never touches the next pipelined response', async () => {
    const late: string[] = [];
    let first: { req: Request; res: Response } | null = null;
    const { engine, port } = await startHttp(async (req, res) => {
      if (req.path === '/a') {
        first = { req, res };
        res.end('a');
        return;
      }
      // /b is answered later; meanwhile /a's handles are used again.
      const a = first!;
      const tryIt = (what: string, fn: () => unknown) => {
        try {
          fn();
          late.push(`${what}: ok`);
        } catch (err) {
          late.push(`${what}: ${(err as HttpError).code}`);
        }
      };
      tryIt('res.end', () => a.res.end('late a'));
      tryIt('res.write', () => a.res.write('x'));
      tryIt('res.header', () => a.res.header('x-late', '1'));
      tryIt('res.status', () => a.res.status(201));
      tryIt('req.header', () => a.req.header('host'));
      tryIt('req.path', () => a.req.path);
      tryIt('req.body', () => a.req.body());
      await sleep(30);
      res.end('b');
    });
    try {
      const all = responses((await raw(port, `${get('/a')}${get('/b')}`)).text);
      assert.deepEqual(
        all.map((r) => [r.status, r.body, r.headers['x-late']]),
        [
          [200, 'a', undefined],
          [200, 'b', undefined],
        ],
      );
      assert.deepEqual(late, [
        'res.end: ok', // a second end() is a no-op
        'res.write: ERR_HTTP_WRITE_AFTER_END',
        'res.header: ERR_HTTP_STALE',
        'res.status: ERR_HTTP_STALE',
        'req.header: ERR_HTTP_STALE',
        'req.path: ok', // decoded before the response ended, so no bytes are read
        'req.body: ERR_HTTP_STALE',
      ]);
    } finally {
      await engine.stop();
    }
  });

  test('a request whose path was never read throws when read after its response ended', async () => {
    let code = '';
    let held: Request | null = null;
    const { engine, port } = await startHttp((req, res) => {
      if (held === null) {
        held = req;
        res.end('one');
        return;
      }
      try {
        void held.path;
      } catch (err) {
        code = (err as HttpError).code;
      }
      res.end('two');
    });
    try {
      const all = responses((await raw(port, `${get('/one')}${get('/two')}`)).text);
      assert.deepEqual(
        all.map((r) => r.body),
        ['one', 'two'],
      );
      assert.equal(code, 'ERR_HTTP_STALE');
    } finally {
      await engine.stop();
    }
  });
});

describe('upgrades', () => {
  const UPGRADE = 'GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\n';

  test("the new handler's onOpen runs under the loop: a throw closes the connection with ERR_NETLOOM_HANDLER", async () => {
    let closeCode: string | undefined;
    const failing: EventHandler = {
      onOpen() {
        throw new Error('broken protocol');
      },
      onClose(_c: Conn, err: Error | undefined) {
        closeCode = (err as NetloomError | undefined)?.code;
      },
    };
    const { engine, port } = await startHttp((_req, res) => res.upgrade(failing));
    try {
      const r = await raw(port, UPGRADE, 500);
      // The 101 and whatever the new protocol staged leave together; a failed start discards them.
      assert.doesNotMatch(r.text, /^HTTP\/1\.1 [^1]/);
      assert.equal(r.closed, true);
      await waitFor(() => closeCode !== undefined, 2000, 'onClose of the new handler');
      assert.equal(closeCode, 'ERR_NETLOOM_HANDLER');
    } finally {
      await engine.stop();
    }
  });

  test("the new handler's onOpen may return Action.Close", async () => {
    const closing: EventHandler = {
      onOpen(c: Conn) {
        c.write('bye\n');
        return Action.Close;
      },
    };
    const { engine, port } = await startHttp((_req, res) => res.upgrade(closing));
    try {
      const r = await raw(port, UPGRADE, 1000);
      assert.equal(r.closed, true, 'closed after onOpen returned Close');
      assert.ok(r.text.endsWith('\r\n\r\nbye\n'), JSON.stringify(r.text));
    } finally {
      await engine.stop();
    }
  });

  for (const [name, headers] of [
    ['a name past 8 KiB with CR/LF', { [`${'x'.repeat(9000)}\r\ninjected`]: 'v' }],
    ['a value past 8 KiB with CR/LF', { 'x-long': `${'v'.repeat(9000)}\r\ninjected: 1` }],
    ['an empty name', { '': 'v' }],
  ] as const) {
    test(`upgrade headers are checked whole: ${name} is refused with 500, nothing injected`, async () => {
      const echo: EventHandler = { onTraffic: (c) => c.write(c.next()) };
      const { engine, port } = await startHttp((_req, res) => res.upgrade(echo, headers));
      try {
        const r = await raw(port, UPGRADE);
        assert.match(r.text, /^HTTP\/1\.1 500 /);
        assert.doesNotMatch(r.text, /injected/i);
        assert.doesNotMatch(r.text, /101 Switching/);
      } finally {
        await engine.stop();
      }
    });
  }
});

describe('a body reader when the response ends first', () => {
  test('req.stream() errors with ERR_HTTP_RESPONSE_ENDED after an early 413', async () => {
    let outcome = '';
    const { engine, port } = await startHttp((req, res) => {
      const s = req.stream();
      s.on('error', (err) => {
        outcome = `error ${(err as HttpError).code}`;
      });
      s.on('end', () => {
        outcome = 'end';
      });
      s.resume();
      res.status(413).end('too large for us');
    });
    try {
      const r = await raw(port, [
        'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n',
        'x'.repeat(1000),
      ]);
      assert.match(r.text, /^HTTP\/1\.1 413 /);
      assert.equal(r.closed, true);
      await waitFor(() => outcome !== '', 2000, 'the stream to settle');
      assert.equal(outcome, 'error ERR_HTTP_RESPONSE_ENDED');
    } finally {
      await engine.stop();
    }
  });

  test('a pipe() consumer gets error(ERR_HTTP_RESPONSE_ENDED) once the response ends mid-body', async () => {
    const seen: string[] = [];
    const { engine, port } = await startHttp((req, res) => {
      req.pipe({
        data: (chunk) => {
          seen.push(`data ${chunk.length}`);
          if (seen.length === 1) res.end('early');
        },
        end: () => seen.push('end'),
        error: (err) => seen.push(`error ${(err as HttpError).code}`),
      });
    });
    try {
      const r = await raw(port, [
        'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n',
        '3\r\ndef\r\n0\r\n\r\n',
      ]);
      assert.match(r.text, /early$/);
      await waitFor(() => seen.some((s) => s.startsWith('error') || s === 'end'), 2000, 'settled');
      assert.deepEqual(seen, ['data 3', 'error ERR_HTTP_RESPONSE_ENDED']);
    } finally {
      await engine.stop();
    }
  });
});

describe('bodies are not allocated before they arrive', () => {
  test('connections that send only a head declaring 1 MiB pin no 1 MiB buffers', async () => {
    let waiting = 0;
    const { engine, port } = await startHttp(
      async (req, res) => {
        waiting++;
        const body = await req.body();
        res.end(`${body.length}`);
      },
      { maxBodySize: 1024 * 1024 },
    );
    const sockets: net.Socket[] = [];
    try {
      globalThis.gc?.();
      const before = process.memoryUsage().arrayBuffers;
      for (let i = 0; i < 200; i++) {
        const s = net.connect(port, '127.0.0.1');
        s.on('error', () => {});
        s.write('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n');
        sockets.push(s);
      }
      await waitFor(() => waiting === 200, 5000, 'every handler waiting for its body');
      const grown = process.memoryUsage().arrayBuffers - before;
      // 200 x 1 MiB would be 200 MiB; what remains is per-connection bookkeeping.
      assert.ok(grown < 16 * 1024 * 1024, `array buffers grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
    } finally {
      for (const s of sockets) s.destroy();
      await engine.stop({ deadline: 200 });
    }
  });

  test('a body still arrives whole, over many reads', async () => {
    const { engine, port } = await startHttp(async (req, res) => {
      const body = await req.body();
      res.end(`${body.length} ${body.subarray(0, 3).toString()} ${body.subarray(-3).toString()}`);
    });
    try {
      const body = `abc${'x'.repeat(300_000)}xyz`;
      const parts = [`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n`];
      for (let i = 0; i < body.length; i += 50_000) parts.push(body.slice(i, i + 50_000));
      const [res] = responses((await raw(port, parts, 500)).text);
      assert.equal(res!.body, `${body.length} abc xyz`);
    } finally {
      await engine.stop();
    }
  });
});

describe('http1 options', () => {
  test('an option given as undefined means its default', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('ok'), {
      maxBodySize: undefined,
      headersTimeout: undefined,
      maxHeaders: undefined,
    });
    try {
      const [ok] = responses((await raw(port, get('/'))).text);
      assert.equal(ok!.status, 200);
      // The default body limit (1 MiB) still applies.
      const big = await raw(port, 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n');
      assert.match(big.text, /^HTTP\/1\.1 413 /);
    } finally {
      await engine.stop();
    }
  });

  test('a bad option is refused with ERR_NETLOOM_OPTION naming it', async () => {
    const { server } = await import('netloom/http1');
    for (const [options, name] of [
      [{ maxBodySize: 0 }, 'maxBodySize'],
      [{ headersTimeout: -1 }, 'headersTimeout'],
      [{ requireHost: 'no' as unknown as boolean }, 'requireHost'],
    ] as const) {
      assert.throws(
        () => server(() => {}, options),
        (err: NetloomError) => err.code === 'ERR_NETLOOM_OPTION' && err.message.includes(name),
      );
    }
  });
});

describe('heads split over reads', () => {
  for (const [name, parts] of [
    ['bare LF ending the request line', ['GET / HTTP/1.1\n', 'Host: a\n', '\n']],
    ['bare LF ending a field line', ['GET / HTTP/1.1\r\nHost: a\r\n', 'X: y\n', '\r\n']],
    ['bare LF as the empty line', ['GET / HTTP/1.1\r\nHost: a\r\n', '\n']],
    ['bare LF between two reads of a line', ['GET / HTTP/1.1\r\nHost: a', '\nX: y\r\n\r\n']],
  ] as const) {
    test(`${name}: 400 at once, not 408 or 431`, async () => {
      const { engine, port } = await startHttp((_req, res) => res.end('accepted'), { headersTimeout: 5000 });
      try {
        const started = Date.now();
        const r = await raw(port, [...parts], 300);
        assert.match(r.text, /^HTTP\/1\.1 400 /, JSON.stringify(r.text));
        assert.equal(r.closed, true);
        assert.ok(Date.now() - started < 2000);
      } finally {
        await engine.stop();
      }
    });
  }

  test('a head trickled byte by byte with a bad byte in a field name is refused at that line', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('accepted'), { headersTimeout: 5000 });
    try {
      const head = 'GET / HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n';
      const r = await raw(port, [...head], 300);
      assert.match(r.text, /^HTTP\/1\.1 400 /);
    } finally {
      await engine.stop();
    }
  });
});

describe('head limits hold however the head is split', () => {
  test('empty lines before a request line count toward its limit (414, not held until the timeout)', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('x'), { headersTimeout: 5000 });
    try {
      const r = await raw(port, '\r\n'.repeat(64 * 1024), 500);
      assert.match(r.text, /^HTTP\/1\.1 414 /);
      assert.equal(r.closed, true);
    } finally {
      await engine.stop();
    }
  });

  test('field lines of exactly maxHeaderBytes pass whether the final CRLF comes in one read or two', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('ok'), { maxHeaderBytes: 200 });
    try {
      // "Host: x\r\n" (9) + "X: <188>\r\n" (193) = 202 > 200; make it exactly 200.
      const lines = `Host: x\r\nX: ${'v'.repeat(186)}\r\n`;
      assert.equal(lines.length, 200);
      const head = `GET / HTTP/1.1\r\n${lines}`;
      const whole = await raw(port, `${head}\r\n`);
      const split = await raw(port, [`${head}\r`, '\n']);
      assert.match(whole.text, /^HTTP\/1\.1 200 /);
      assert.match(split.text, /^HTTP\/1\.1 200 /);
      const over = await raw(port, [`GET / HTTP/1.1\r\nHost: x\r\nX: ${'v'.repeat(187)}\r\n`, '\r\n']);
      assert.match(over.text, /^HTTP\/1\.1 431 /);
    } finally {
      await engine.stop();
    }
  });

  test('a bare CR is refused at once when the byte after it comes in the next read', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('x'), { headersTimeout: 5000 });
    try {
      const started = Date.now();
      const r = await raw(port, ['GET / HTTP/1.1\r\nHost: a\r\nX: 1\r', 'XYZ'], 300);
      assert.match(r.text, /^HTTP\/1\.1 400 /);
      assert.ok(Date.now() - started < 1500);
    } finally {
      await engine.stop();
    }
  });
});

describe('the exchange in every state (review findings)', () => {
  const POST = 'POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789';

  test('answered while the body still arrives: a stalled body is closed at requestTimeout, a FIN at once', async () => {
    let loop: EventLoop | null = null;
    const engine = await serve(
      (l: EventLoop) => {
        loop = l;
        return server((_req, res) => res.end('early'), { requestTimeout: 300 });
      },
      { loops: 1 },
    );
    try {
      const stalled = await script(engine.port, [POST], 1500);
      assert.match(stalled.text, /^HTTP\/1\.1 200 /);
      assert.equal(stalled.closed, true, 'closed once the body timeout passed');
      assert.ok(stalled.elapsed >= 250 && stalled.elapsed < 1200, `after ${stalled.elapsed} ms`);
      const fin = await script(engine.port, [POST, 50, 'FIN'], 1500);
      assert.equal(fin.closed, true);
      assert.ok(fin.elapsed < 250, `closed ${fin.elapsed} ms after the FIN at ~50 ms`);
      await waitFor(() => loop!.connections === 0, 1000, 'no connection left');
    } finally {
      await engine.stop({ deadline: 200 });
    }
  });

  test('a complete body the handler has not read yet survives a half-close and a late read', async () => {
    const { engine, port } = await startHttp(
      async (req, res) => {
        await sleep(req.path === '/late' ? 400 : 50);
        res.end(`got ${await req.text()}`);
      },
      { requestTimeout: 200 },
    );
    try {
      const half = await script(
        port,
        ['POST /half HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello', 'FIN'],
        800,
      );
      assert.match(half.text, /^HTTP\/1\.1 200 [\s\S]*got hello$/);
      const late = await script(
        port,
        ['POST /late HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello'],
        1000,
      );
      assert.match(
        late.text,
        /^HTTP\/1\.1 200 [\s\S]*got hello$/,
        'not a 408: the client sent it all on time',
      );
    } finally {
      await engine.stop({ deadline: 200 });
    }
  });

  test('a request the server ends mid-body (FIN: 400, body timeout: 408) aborts req.signal and onAbort', async () => {
    const seen: { aborted: boolean; reason: string | undefined; listener: boolean }[] = [];
    const { engine, port } = await startHttp(
      async (req) => {
        let listener = false;
        req.onAbort(() => {
          listener = true;
        });
        const signal = req.signal;
        await new Promise<void>((resolve) => {
          signal.addEventListener('abort', () => resolve());
          setTimeout(resolve, 800);
        });
        seen.push({ aborted: signal.aborted, reason: (signal.reason as HttpError)?.message, listener });
      },
      { requestTimeout: 200 },
    );
    try {
      const fin = await script(port, [POST, 50, 'FIN'], 400);
      assert.match(fin.text, /^HTTP\/1\.1 400 /);
      const timeout = await script(port, [POST], 600);
      assert.match(timeout.text, /^HTTP\/1\.1 408 /);
      await waitFor(() => seen.length === 2, 2000, 'both handlers to hear');
      assert.deepEqual(seen, [
        { aborted: true, reason: 'client closed before the body was complete', listener: true },
        { aborted: true, reason: 'request body timeout', listener: true },
      ]);
    } finally {
      await engine.stop({ deadline: 200 });
    }
  });

  test('a tunnel accepted after its early bytes paused reading keeps reading', async () => {
    const echo: EventHandler = { onTraffic: (c) => c.write(Buffer.from(c.next())) };
    const { engine, port } = await startHttp(
      async (_req, res) => {
        await sleep(100); // dialing the tunnel's far end
        res.upgrade(echo);
      },
      { maxBufferedBody: 1024 },
    );
    try {
      const early = 'e'.repeat(4096); // more than maxBufferedBody: reading pauses before the accept
      const r = await script(
        port,
        [`CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n${early}`, 300, 'PING'],
        1500,
      );
      assert.match(r.text, /^HTTP\/1\.1 200 /);
      assert.ok(r.text.endsWith(`${early}PING`), `${r.text.length} bytes`);
    } finally {
      await engine.stop({ deadline: 200 });
    }
  });

  test('the first head counts from the connection opening, not from its first byte', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('x'), { headersTimeout: 400 });
    try {
      const r = await script(port, [350, 'GET / HTTP/1.1\r\n'], 1500);
      assert.match(r.text, /^HTTP\/1\.1 408 /);
      assert.ok(r.elapsed < 650, `408 after ${r.elapsed} ms (headersTimeout 400)`);
    } finally {
      await engine.stop({ deadline: 200 });
    }
  });

  test('an onResponse hook that throws is logged and the connection carries on', async () => {
    const { engine, port } = await startHttp((req, res) => res.end(req.path), {
      onResponse() {
        throw new Error('broken hook');
      },
    });
    try {
      const r = await raw(port, `${get('/1')}${get('/2')}`);
      assert.deepEqual(
        responses(r.text).map((x) => x.body),
        ['/1', '/2'],
      );
    } finally {
      await engine.stop({ deadline: 200 });
    }
  });
});
