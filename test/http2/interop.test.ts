// HTTP/2 against real clients: node:http2, fetch (HTTP/1.1 on the same port, the same handler), curl (h2c
// prior knowledge, h2 and http/1.1 over TLS by ALPN), nghttp and h2load. Clients run asynchronously: a
// one-loop engine shares the test's thread.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { after, type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type EngineOptions, serve } from 'netloom';
import type { RequestHandler } from 'netloom/http1';
import { type Http2Response, server } from 'netloom/http2';
import { TestPki } from '../tls/certs.ts';
import { run } from '../tls/support.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('web', ['web.test']);

const MB = 1024 * 1024;
const BIG = randomBytes(2 * MB);
const UPLOAD = randomBytes(MB);

interface AppState {
  /** How many times `/big` waited in `res.drain()` (write returned false). */
  drains: number;
  /** Request trailers seen by `/trailers-in` after its body. */
  trailersIn: (readonly [string, string][])[];
  /** Handlers of `/slow` running at once, at most. */
  maxInflight: number;
  inflight: number;
  /** `/hang` started; then how its `req.signal` aborted. */
  hangStarted: Promise<void>;
  hangAborted: Promise<unknown>;
}

/** One handler for every version: bodies never depend on the version (headers tell it). */
function app(): { handler: RequestHandler; state: AppState } {
  let started!: () => void;
  let aborted!: (reason: unknown) => void;
  const state: AppState = {
    drains: 0,
    trailersIn: [],
    maxInflight: 0,
    inflight: 0,
    hangStarted: new Promise<void>((r) => (started = r)),
    hangAborted: new Promise<unknown>((r) => (aborted = r)),
  };
  const handler: RequestHandler = async (req, res) => {
    res.header('x-version', req.httpVersion).header('x-secure', String(req.secure));
    switch (req.path) {
      case '/':
        res.header('content-type', 'text/plain').end('hello');
        return;
      case '/info':
        res.json({ version: req.httpVersion, secure: req.secure, method: req.method });
        return;
      case '/echo': {
        const body = await req.body(2_000_000);
        res.header('content-type', 'application/octet-stream').end(body);
        return;
      }
      case '/big': {
        const chunk = 16 * 1024;
        for (let off = 0; off < BIG.length; off += chunk) {
          if (!res.write(BIG.subarray(off, off + chunk))) {
            state.drains++;
            await res.drain();
          }
        }
        res.end();
        return;
      }
      case '/trailers-in': {
        const body = await req.body();
        state.trailersIn.push([...req.trailers]);
        res.json({ length: body.length, trailers: req.trailers });
        return;
      }
      case '/trailers-out':
        if (req.httpVersion === '2') (res as Http2Response).trailer('x-checksum', 'abc123');
        res.end('with trailers');
        return;
      case '/nocontent':
        res.status(204).end('ignored');
        return;
      case '/throw':
        throw new Error('boom');
      case '/slow': {
        state.inflight++;
        state.maxInflight = Math.max(state.maxInflight, state.inflight);
        await sleep(50);
        state.inflight--;
        res.end(`slow ${req.searchParams().get('i')}`);
        return;
      }
      case '/hang': {
        req.signal.addEventListener('abort', () => aborted(req.signal.reason), { once: true });
        started();
        await new Promise<void>((r) => req.signal.addEventListener('abort', () => r(), { once: true }));
        res.end();
        return;
      }
      default:
        res.status(404).end('not found');
    }
  };
  return { handler, state };
}

/** Serves `app()` (both versions) on one loop; stopped after the test. */
async function start(t: TestContext, engine: EngineOptions = {}) {
  const { handler, state } = app();
  const e = await serve(server(handler), { loops: 1, ...engine });
  const cleanups: (() => unknown)[] = [() => e.stop()];
  t.after(async () => {
    for (const f of cleanups.reverse()) await f();
  });
  return { port: e.port, state, cleanups };
}

async function startTls(t: TestContext) {
  return start(t, { tls: { cert: cert.cert, key: cert.key, alpnProtocols: ['h2', 'http/1.1'] } });
}

/** A node:http2 session to `port`, closed after the test. */
async function connect(port: number, cleanups: (() => unknown)[]): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  cleanups.push(() => session.destroy());
  await new Promise<void>((resolve, reject) => {
    session.once('connect', () => resolve());
    session.once('error', reject);
  });
  return session;
}

interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers: http2.IncomingHttpHeaders | null;
  dataEvents: number;
}

function request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer | string,
  sendTrailers?: http2.OutgoingHttpHeaders,
): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, {
      endStream: body === undefined && sendTrailers === undefined,
      waitForTrailers: sendTrailers !== undefined,
    });
    const chunks: Buffer[] = [];
    let response: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | null = null;
    let dataEvents = 0;
    stream.on('response', (h) => (response = h));
    stream.on('trailers', (h) => (trailers = h));
    stream.on('data', (d: Buffer) => {
      dataEvents++;
      chunks.push(d);
    });
    if (sendTrailers !== undefined) stream.on('wantTrailers', () => stream.sendTrailers(sendTrailers));
    stream.on('end', () =>
      resolve({
        status: Number(response[':status']),
        headers: response,
        body: Buffer.concat(chunks),
        trailers,
        dataEvents,
      }),
    );
    stream.on('error', reject);
    if (body !== undefined || sendTrailers !== undefined) stream.end(body);
  });
}

/** Resolves with `p`, or rejects after `ms` naming `what`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- node:http2 ---------------------------------------------------------------------------------------

test('node:http2: GET; req.httpVersion is 2', async (t) => {
  const { port, cleanups } = await start(t);
  const session = await connect(port, cleanups);
  const r = await request(session, { ':path': '/' });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'hello');
  assert.equal(r.headers['content-type'], 'text/plain');
  assert.equal(r.headers['x-version'], '2');
  const info = await request(session, { ':path': '/info' });
  assert.deepEqual(JSON.parse(info.body.toString()), { version: '2', secure: false, method: 'GET' });
});

test('node:http2: a 1 MB POST body is echoed byte-exact', async (t) => {
  const { port, cleanups } = await start(t);
  const session = await connect(port, cleanups);
  const r = await request(session, { ':method': 'POST', ':path': '/echo' }, UPLOAD);
  assert.equal(r.status, 200);
  assert.equal(r.body.length, UPLOAD.length);
  assert.ok(r.body.equals(UPLOAD), 'the echoed body is byte-exact');
});

test('node:http2: 50 concurrent streams on one session are all answered', async (t) => {
  const { port, state, cleanups } = await start(t);
  const session = await connect(port, cleanups);
  const answers = await Promise.all(
    Array.from({ length: 50 }, (_, i) => request(session, { ':path': `/slow?i=${i}` })),
  );
  answers.forEach((r, i) => {
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), `slow ${i}`);
  });
  assert.ok(state.maxInflight > 1, `the handlers ran concurrently (at most ${state.maxInflight} at once)`);
});

test('node:http2: a 2 MB streamed response (write + drain) arrives byte-exact', async (t) => {
  const { port, state, cleanups } = await start(t);
  const session = await connect(port, cleanups);
  const r = await request(session, { ':path': '/big' });
  assert.equal(r.status, 200);
  assert.equal(r.body.length, BIG.length);
  assert.ok(r.body.equals(BIG), 'the body is byte-exact');
  // 2 MB through 64 KiB windows: the handler must have been held back.
  assert.ok(state.drains > 0, 'write returned false at least once');
});

test('node:http2: request trailers are in req.trailers after the body', async (t) => {
  const { port, state, cleanups } = await start(t);
  const session = await connect(port, cleanups);
  const r = await request(session, { ':method': 'POST', ':path': '/trailers-in' }, 'some body', {
    'x-sum': '42',
    'x-note': 'end',
  });
  assert.equal(r.status, 200);
  const got = JSON.parse(r.body.toString()) as { length: number; trailers: [string, string][] };
  assert.equal(got.length, 9);
  assert.deepEqual(
    new Map(got.trailers),
    new Map([
      ['x-sum', '42'],
      ['x-note', 'end'],
    ]),
  );
  assert.equal(state.trailersIn.length, 1);
});

test('node:http2: response trailers reach the client', async (t) => {
  const { port, cleanups } = await start(t);
  const session = await connect(port, cleanups);
  const r = await request(session, { ':path': '/trailers-out' });
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'with trailers');
  assert.ok(r.trailers !== null, "a 'trailers' event came");
  assert.equal(r.trailers['x-checksum'], 'abc123');
});

test('node:http2: HEAD and 204 get no body', async (t) => {
  const { port, cleanups } = await start(t);
  const session = await connect(port, cleanups);
  const head = await request(session, { ':method': 'HEAD', ':path': '/' });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assert.equal(head.dataEvents, 0);
  const none = await request(session, { ':path': '/nocontent' });
  assert.equal(none.status, 204);
  assert.equal(none.body.length, 0);
  assert.equal(none.dataEvents, 0);
  // The session goes on after both.
  assert.equal((await request(session, { ':path': '/' })).body.toString(), 'hello');
});

test('node:http2: a handler that throws gets 500', async (t) => {
  const { port, cleanups } = await start(t);
  const session = await connect(port, cleanups);
  const r = await request(session, { ':path': '/throw' });
  assert.equal(r.status, 500);
  assert.equal((await request(session, { ':path': '/' })).status, 200, 'the session goes on');
});

test('node:http2: a stream the client cancels aborts req.signal', async (t) => {
  const { port, state, cleanups } = await start(t);
  const session = await connect(port, cleanups);
  const stream = session.request({ ':path': '/hang' });
  stream.on('error', () => {});
  stream.resume();
  await within(state.hangStarted, 5000, 'the handler of /hang started');
  stream.close(http2.constants.NGHTTP2_CANCEL);
  const reason = await within(state.hangAborted, 5000, 'req.signal aborted');
  assert.equal((reason as { code?: string }).code, 'ERR_HTTP_CLOSED');
  assert.equal((await request(session, { ':path': '/' })).status, 200, 'the session goes on');
});

// ---- one handler, both versions ----------------------------------------------------------------------

test('the same handler over HTTP/1.1 (fetch) on the same port gives the same bodies', async (t) => {
  const { port, cleanups } = await start(t);
  const session = await connect(port, cleanups);
  const base = `http://127.0.0.1:${port}`;
  const cases: { path: string; method?: string; body?: Buffer }[] = [
    { path: '/' },
    { path: '/echo', method: 'POST', body: UPLOAD },
    { path: '/big' },
    { path: '/nocontent' },
    { path: '/throw' },
    { path: '/missing' },
  ];
  for (const c of cases) {
    const method = c.method ?? 'GET';
    const h1 = await fetch(base + c.path, { method, body: c.body });
    const h1body = Buffer.from(await h1.arrayBuffer());
    const h2 = await request(session, { ':method': method, ':path': c.path }, c.body);
    // An error answered in the handler's place (500) carries none of the handler's headers.
    if (c.path !== '/throw') {
      assert.equal(h1.headers.get('x-version'), '1.1', c.path);
      assert.equal(h2.headers['x-version'], '2', c.path);
    }
    assert.equal(h2.status, h1.status, `${c.path}: same status`);
    assert.equal(h2.body.length, h1body.length, `${c.path}: same body length`);
    assert.ok(h2.body.equals(h1body), `${c.path}: same body`);
  }
});

// ---- curl ---------------------------------------------------------------------------------------------

test('curl --http2-prior-knowledge over cleartext: HTTP/2 200', async (t) => {
  const { port } = await start(t);
  const r = await run('curl', ['--http2-prior-knowledge', '-s', '-i', `http://127.0.0.1:${port}/`]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^HTTP\/2 200 ?\r?\n/);
  assert.match(r.stdout, /^x-version: 2\r?$/m);
  assert.match(r.stdout, /\r?\n\r?\nhello$/);
});

test('curl over TLS: --http2 negotiates h2 (req.secure), --http1.1 gets HTTP/1.1 on the same listener', async (t) => {
  const { port } = await startTls(t);
  const common = ['-s', '-i', '--cacert', pki.ca.certFile, '--resolve', `web.test:${port}:127.0.0.1`];
  const url = `https://web.test:${port}/info`;
  const h2 = await run('curl', [...common, '--http2', url]);
  assert.equal(h2.code, 0, h2.stderr);
  assert.match(h2.stdout, /^HTTP\/2 200 ?\r?\n/);
  const body2 = JSON.parse(h2.stdout.slice(h2.stdout.indexOf('{')));
  assert.deepEqual(body2, { version: '2', secure: true, method: 'GET' });

  const h1 = await run('curl', [...common, '--http1.1', url]);
  assert.equal(h1.code, 0, h1.stderr);
  assert.match(h1.stdout, /^HTTP\/1\.1 200 /);
  const body1 = JSON.parse(h1.stdout.slice(h1.stdout.indexOf('{')));
  assert.deepEqual(body1, { version: '1.1', secure: true, method: 'GET' });
});

// ---- nghttp2's tools ------------------------------------------------------------------------------------

test('nghttp -nv: exit 0 and :status: 200', async (t) => {
  const { port } = await start(t);
  const r = await run('nghttp', ['-nv', `http://127.0.0.1:${port}/`]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /:status: 200/);
});

test('h2load -n 2000 -c 4 -m 10: 2000 succeeded, 0 failed', async (t) => {
  const { port } = await start(t);
  const r = await run(
    'h2load',
    ['-n', '2000', '-c', '4', '-m', '10', `http://127.0.0.1:${port}/`],
    '',
    20_000,
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /2000 succeeded, 0 failed/, r.stdout);
});
