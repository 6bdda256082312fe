// The HTTP/1.1 server's behaviour with real clients (fetch/undici, curl, raw sockets): keep-alive, pipelining,
// async handlers, errors, bodies both ways, timeouts, Expect, HEAD/204/304, upgrades and shutdown.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Action, type EventHandler } from 'netloom';
import { HttpError } from 'netloom/http1';
import { get, raw, responses, startHttp } from './support.ts';

const exec = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('basics with real clients', () => {
  test('fetch (undici): status, headers, body, keep-alive reuse', async () => {
    const { engine, url } = await startHttp((req, res) => {
      res.header('content-type', 'text/plain').header('x-path', req.path).end(`hello ${req.query}`);
    });
    try {
      for (let i = 0; i < 5; i++) {
        const r = await fetch(`${url}/a/b?i=${i}`);
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('x-path'), '/a/b');
        assert.equal(r.headers.get('content-length'), String(`hello i=${i}`.length));
        assert.match(r.headers.get('date') ?? '', /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
        assert.equal(await r.text(), `hello i=${i}`);
      }
      // undici opens a second socket for the second request (node:http sees the same), then reuses them.
      assert.ok(engine.stats().total.accepted <= 2, 'fetch reused its keep-alive connections');
    } finally {
      await engine.stop();
    }
  });

  test('curl: GET, POST with a body, chunked upload', async () => {
    const { engine, url } = await startHttp(async (req, res) => {
      const body = await req.text();
      res.json({ method: req.method, te: req.header('transfer-encoding') ?? null, body });
    });
    try {
      const a = await exec('curl', ['-s', `${url}/`]);
      assert.deepEqual(JSON.parse(a.stdout), { method: 'GET', te: null, body: '' });
      const b = await exec('curl', ['-s', '--data-binary', 'payload', `${url}/`]);
      assert.deepEqual(JSON.parse(b.stdout), { method: 'POST', te: null, body: 'payload' });
      const c = await exec('curl', [
        '-s',
        '-H',
        'Transfer-Encoding: chunked',
        '--data-binary',
        'chunky',
        `${url}/`,
      ]);
      assert.deepEqual(JSON.parse(c.stdout), { method: 'POST', te: 'chunked', body: 'chunky' });
    } finally {
      await engine.stop();
    }
  });

  test('headers: lookup is case-insensitive, pairs keep order and case, multiple values', async () => {
    const { engine, port } = await startHttp((req, res) => {
      res.json({
        ua: req.header('USER-AGENT'),
        xs: req.headerValues('x-multi'),
        pairs: req.headerPairs(),
        missing: req.header('nope') ?? null,
      });
    });
    try {
      const { text } = await raw(
        port,
        'GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: t/1\r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n',
      );
      assert.deepEqual(JSON.parse(responses(text)[0]!.body), {
        ua: 't/1',
        xs: ['1', '2'],
        pairs: [
          ['Host', 'h'],
          ['User-Agent', 't/1'],
          ['X-Multi', '1'],
          ['x-multi', '2'],
        ],
        missing: null,
      });
    } finally {
      await engine.stop();
    }
  });
});

describe('connections', () => {
  test('pipelined requests are answered in order, async handlers included', async () => {
    const { engine, port } = await startHttp(async (req, res) => {
      const delay = Number(req.query.split('=')[1] ?? 0);
      if (delay > 0) await sleep(delay);
      res.end(req.path);
    });
    try {
      const paths = ['/1?d=30', '/2?d=0', '/3?d=10', '/4?d=0'];
      const { text } = await raw(port, paths.map((p) => get(p)).join(''), 400);
      assert.deepEqual(
        responses(text).map((r) => r.body),
        ['/1', '/2', '/3', '/4'],
      );
    } finally {
      await engine.stop();
    }
  });

  test('pipelined sync responses of one read leave in one socket write', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('x'));
    try {
      const s = net.connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      s.write(get().repeat(16));
      await sleep(200);
      assert.equal(responses(Buffer.concat(chunks).toString('latin1')).length, 16);
      assert.equal(chunks.length, 1, 'one TCP read on the client: one write on the server');
      s.destroy();
    } finally {
      await engine.stop();
    }
  });

  test('Connection: close and HTTP/1.0 close after the response; 1.0 keep-alive stays open', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('ok'));
    try {
      const a = await raw(port, get('/', 'Connection: close\r\n'));
      assert.equal(responses(a.text)[0]!.headers.connection, 'close');
      assert.ok(a.closed);
      const b = await raw(port, 'GET / HTTP/1.0\r\n\r\n');
      assert.equal(responses(b.text)[0]!.headers.connection, 'close');
      assert.ok(b.closed);
      const c = await raw(port, 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
      assert.equal(responses(c.text)[0]!.headers.connection, 'keep-alive');
      assert.equal(c.closed, false);
    } finally {
      await engine.stop();
    }
  });

  test('keep-alive timeout closes an idle connection', async () => {
    const { engine, port } = await startHttp(
      (_req, res) => res.end('ok'),
      { keepAliveTimeout: 200 },
      { timerResolution: 10 },
    );
    try {
      const started = Date.now();
      const { text, closed } = await raw(port, get(), 2000);
      assert.equal(responses(text)[0]!.status, 200);
      assert.ok(closed);
      assert.ok(Date.now() - started >= 180);
    } finally {
      await engine.stop();
    }
  });

  test('slowloris: a head not complete within headersTimeout gets 408 and a close', async () => {
    const { engine, port } = await startHttp(
      (_req, res) => res.end('ok'),
      { headersTimeout: 250 },
      { timerResolution: 10 },
    );
    try {
      const parts = [
        'GET / HTTP/1.1\r\n',
        'Host: a\r\n',
        'X-1: a\r\n',
        'X-2: b\r\n',
        'X-3: c\r\n',
        'X-4: d\r\n',
      ];
      const s = net.connect(port, '127.0.0.1');
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      const closed = new Promise((r) => s.on('close', r));
      s.on('error', () => {});
      for (const p of parts) {
        s.write(p);
        await sleep(80); // keeps trickling, never finishing
      }
      await closed;
      const [res] = responses(Buffer.concat(chunks).toString('latin1'));
      assert.equal(res!.status, 408);
    } finally {
      await engine.stop();
    }
  });

  test('a body that does not arrive within requestTimeout gets 408', async () => {
    const { engine, port } = await startHttp(
      async (req, res) => {
        await req.body();
        res.end('ok');
      },
      { requestTimeout: 200 },
      { timerResolution: 10 },
    );
    try {
      const { text, closed } = await raw(
        port,
        'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc',
        2000,
      );
      assert.equal(responses(text)[0]!.status, 408);
      assert.ok(closed);
    } finally {
      await engine.stop();
    }
  });

  test('a client that half-closes after its request still gets the response', async () => {
    const { engine, port } = await startHttp(async (_req, res) => {
      await sleep(50);
      res.end('late but here');
    });
    try {
      const s = net.connect(port, '127.0.0.1');
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      const closed = new Promise((r) => s.on('close', r));
      s.end(get());
      await closed;
      assert.equal(responses(Buffer.concat(chunks).toString('latin1'))[0]!.body, 'late but here');
    } finally {
      await engine.stop();
    }
  });
});

describe('errors', () => {
  test('a throwing handler gets 500 without its message; the connection stays usable', async () => {
    const { engine, port } = await startHttp((req, res) => {
      if (req.path === '/boom') throw new Error('secret internal detail');
      res.end('fine');
    });
    try {
      const { text, closed } = await raw(port, get('/boom') + get('/after'));
      const [first, second] = responses(text);
      assert.equal(first!.status, 500);
      assert.ok(!first!.body.includes('secret'), 'the error text never reaches the client');
      assert.equal(second!.body, 'fine');
      assert.equal(closed, false);
    } finally {
      await engine.stop();
    }
  });

  test('an async rejection gets 500; an HttpError gets its own status', async () => {
    const { engine, url } = await startHttp(async (req) => {
      await sleep(1);
      if (req.path === '/teapot') throw new HttpError(418, 'short and stout');
      throw new Error('nope');
    });
    try {
      const a = await fetch(`${url}/x`);
      assert.equal(a.status, 500);
      assert.doesNotMatch(await a.text(), /nope/);
      const b = await fetch(`${url}/teapot`);
      assert.equal(b.status, 418);
      assert.match(await b.text(), /short and stout/);
    } finally {
      await engine.stop();
    }
  });

  test('header injection is refused: CR/LF in a value or a bad name -> 500, nothing injected', async () => {
    const { engine, port } = await startHttp((req, res) => {
      if (req.path === '/value') res.header('x-evil', 'a\r\nset-cookie: pwned=1');
      else if (req.path === '/name') res.header('x evil', 'a');
      else res.header('x-ok', 'fine');
      res.end('body');
    });
    try {
      for (const path of ['/value', '/name']) {
        const { text } = await raw(port, get(path, 'Connection: close\r\n'));
        assert.equal(responses(text)[0]!.status, 500, path);
        assert.doesNotMatch(text, /pwned|x evil/i);
      }
      const ok = await raw(port, get('/ok', 'Connection: close\r\n'));
      assert.equal(responses(ok.text)[0]!.headers['x-ok'], 'fine');
    } finally {
      await engine.stop();
    }
  });

  test('an error after the head went out cuts the connection instead of sending a second response', async () => {
    const { engine, port } = await startHttp(async (_req, res) => {
      res.write('partial');
      await sleep(10);
      throw new Error('midway');
    });
    try {
      const { text, closed } = await raw(port, get(), 1000);
      assert.ok(text.startsWith('HTTP/1.1 200 OK'));
      assert.ok(closed);
      assert.doesNotMatch(text, /500/);
    } finally {
      await engine.stop();
    }
  });
});

describe('bodies', () => {
  test('req.body() limits: 413 past the limit, JSON errors are 400', async () => {
    const { engine, url } = await startHttp(async (req, res) => {
      if (req.path === '/json') res.json(await req.json());
      else res.end(String((await req.body(10)).length));
    });
    try {
      assert.equal(await (await fetch(url, { method: 'POST', body: '0123456789' })).text(), '10');
      assert.equal((await fetch(url, { method: 'POST', body: '0123456789x' })).status, 413);
      assert.equal((await fetch(`${url}/json`, { method: 'POST', body: '{bad' })).status, 400);
      assert.deepEqual(await (await fetch(`${url}/json`, { method: 'POST', body: '{"a":[1]}' })).json(), {
        a: [1],
      });
    } finally {
      await engine.stop();
    }
  });

  test('a large upload streams through req.stream() with backpressure', async () => {
    let peakChunk = 0;
    const { engine, url } = await startHttp(
      async (req, res) => {
        let total = 0;
        let sum = 0;
        for await (const chunk of req.stream()) {
          peakChunk = Math.max(peakChunk, (chunk as Buffer).length);
          total += (chunk as Buffer).length;
          for (const b of chunk as Buffer) sum = (sum + b) % 65521;
          await sleep(0);
        }
        res.json({ total, sum });
      },
      { maxBodySize: 64 * 1024 * 1024 },
    );
    try {
      const size = 32 * 1024 * 1024;
      const body = Buffer.alloc(size);
      for (let i = 0; i < size; i++) body[i] = (i * 31) & 0xff;
      let sum = 0;
      for (const b of body) sum = (sum + b) % 65521;
      const r = await fetch(url, { method: 'POST', body });
      assert.deepEqual(await r.json(), { total: size, sum });
    } finally {
      await engine.stop();
    }
  });

  test('pipe() hands views in place and can pause the client', async () => {
    const { engine, url } = await startHttp((req, res) => {
      let total = 0;
      let pauses = 0;
      req.pipe({
        data(chunk) {
          total += chunk.length;
          if (pauses < 3) {
            pauses++;
            setTimeout(() => req.resumeBody(), 20);
            return false;
          }
          return true;
        },
        end(trailers) {
          res.json({ total, pauses, trailers });
        },
        error() {},
      });
    });
    try {
      const r = await fetch(url, { method: 'POST', body: Buffer.alloc(300_000, 1) });
      assert.deepEqual(await r.json(), { total: 300_000, pauses: 3, trailers: [] });
    } finally {
      await engine.stop();
    }
  });

  test('a body the handler never reads is discarded and the connection kept (small), or closed (large)', async () => {
    const { engine, port } = await startHttp((_req, res) => res.end('ignored'), {
      maxBodySize: 4 * 1024 * 1024,
    });
    try {
      const small = await raw(
        port,
        `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n${'x'.repeat(1000)}${get('/next')}`,
      );
      const both = responses(small.text);
      assert.equal(both.length, 2);
      assert.equal(small.closed, false);
      const large = await raw(port, `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${1024 * 1024}\r\n\r\n`);
      assert.equal(responses(large.text)[0]!.headers.connection, 'close');
      assert.ok(large.closed);
    } finally {
      await engine.stop();
    }
  });

  test('streaming a large response with backpressure: chunked, complete, bounded', async () => {
    let maxQueued = 0;
    const { engine, port } = await startHttp(async (_req, res) => {
      const piece = Buffer.alloc(64 * 1024, 0x61);
      for (let i = 0; i < 256; i++) {
        if (!res.write(piece)) await res.drain();
        maxQueued = Math.max(
          maxQueued,
          (res as unknown as { ex: { conn: { outboundBuffered: number } } }).ex.conn.outboundBuffered,
        );
      }
      res.end();
    });
    try {
      const s = net.connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.write(get('/', 'Connection: close\r\n'));
      let received = 0;
      s.pause();
      const done = new Promise((r) => s.on('end', r));
      // A slow reader: 1 MiB every 20 ms.
      const reader = setInterval(() => {
        for (let chunk = s.read(); chunk !== null; chunk = s.read()) {
          received += (chunk as Buffer).length;
          if (received > 4 * 1024 * 1024 * 4) break;
        }
      }, 20);
      await done;
      clearInterval(reader);
      for (let chunk = s.read(); chunk !== null; chunk = s.read()) received += (chunk as Buffer).length;
      assert.ok(received > 16 * 1024 * 1024, `received ${received}`);
      assert.ok(maxQueued < 2 * 1024 * 1024, `server queued at most ${maxQueued} bytes`);
    } finally {
      await engine.stop();
    }
  });

  test('Expect: 100-continue sends 100 when the body is read; answering first skips it and closes', async () => {
    const { engine, port } = await startHttp(async (req, res) => {
      if (req.path === '/read') res.end(await req.text());
      else res.status(403).end('no');
    });
    try {
      const s = net.connect(port, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      const chunks: Buffer[] = [];
      s.on('data', (d: Buffer) => chunks.push(d));
      s.write('POST /read HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n');
      await sleep(100);
      assert.equal(Buffer.concat(chunks).toString(), 'HTTP/1.1 100 Continue\r\n\r\n');
      s.write('hello');
      await sleep(100);
      const [cont, final] = responses(Buffer.concat(chunks).toString('latin1'));
      assert.equal(cont!.status, 100);
      assert.equal(final!.body, 'hello');
      s.destroy();
      const refused = await raw(
        port,
        'POST /deny HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n',
      );
      const [only] = responses(refused.text);
      assert.equal(only!.status, 403);
      assert.equal(only!.headers.connection, 'close');
      assert.ok(refused.closed);
    } finally {
      await engine.stop();
    }
  });

  test('HEAD, 204 and 304 carry no body; HEAD keeps the Content-Length', async () => {
    const { engine, port } = await startHttp((req, res) => {
      if (req.path === '/204') res.status(204).end();
      else if (req.path === '/304') res.status(304).end();
      else res.end('twelve bytes');
    });
    try {
      const { text } = await raw(
        port,
        `HEAD / HTTP/1.1\r\nHost: a\r\n\r\n${get('/204')}${get('/304')}${get('/')}`,
      );
      // Bodies are absent, so the text is four heads in a row and the last response's body.
      const blocks = text.split('HTTP/1.1 ').filter(Boolean);
      assert.equal(blocks.length, 4);
      assert.ok(
        blocks[0]!.startsWith('200 OK') && blocks[0]!.endsWith('\r\n\r\n'),
        'HEAD: no body after the head',
      );
      assert.match(blocks[0]!, /content-length: 12\r\n/, 'HEAD keeps the length a GET would have');
      assert.ok(blocks[1]!.startsWith('204') && blocks[1]!.endsWith('\r\n\r\n'));
      assert.doesNotMatch(blocks[1]!, /content-length|transfer-encoding/i);
      assert.ok(blocks[2]!.startsWith('304') && blocks[2]!.endsWith('\r\n\r\n'));
      assert.ok(blocks[3]!.endsWith('\r\n\r\ntwelve bytes'));
    } finally {
      await engine.stop();
    }
  });

  test('res.json with a schema uses fast-json-stringify (unknown keys dropped)', async () => {
    const schema = { type: 'object', properties: { a: { type: 'integer' } } };
    const { engine, url } = await startHttp((_req, res) => res.json({ a: 1, secret: 'x' }, schema));
    try {
      const r = await fetch(url);
      assert.equal(r.headers.get('content-type'), 'application/json');
      assert.equal(await r.text(), '{"a":1}');
    } finally {
      await engine.stop();
    }
  });
});

describe('upgrade and shutdown', () => {
  test('res.upgrade hands the connection and the bytes after the head to another handler', async () => {
    const echoUpper: EventHandler = {
      onOpen(conn) {
        conn.write('[open]');
      },
      onTraffic(conn) {
        const text = conn.next().toString();
        conn.write(text.toUpperCase());
        if (text.includes('bye')) return Action.Close;
      },
    };
    const { engine, port } = await startHttp((req, res) => {
      if (req.upgrade === 'shout') res.upgrade(echoUpper, { 'x-mode': 'loud' });
      else res.status(426).end('upgrade required');
    });
    try {
      const { text, closed } = await raw(port, [
        'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\nfirst bytes ',
        'then bye',
      ]);
      assert.ok(text.startsWith('HTTP/1.1 101 Switching Protocols\r\n'), text);
      assert.match(text, /upgrade: shout\r\n/);
      assert.match(text, /x-mode: loud\r\n/);
      assert.ok(text.endsWith('\r\n\r\n[open]FIRST BYTES THEN BYE'), JSON.stringify(text));
      assert.ok(closed);
    } finally {
      await engine.stop();
    }
  });

  test('graceful stop: the request in flight completes with connection: close', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const { engine, port } = await startHttp(async (_req, res) => {
      await gate;
      res.end('finished');
    });
    const pending = raw(port, get(), 3000);
    await sleep(50);
    const stopped = engine.stop({ deadline: 3000 });
    await sleep(150);
    release();
    const { text, closed } = await pending;
    const [res] = responses(text);
    assert.equal(res!.body, 'finished');
    assert.equal(res!.headers.connection, 'close');
    assert.ok(closed);
    await stopped;
  });
});
