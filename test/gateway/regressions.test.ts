// Regression tests for defects a code review reproduced in the gateway and its HTTP/1.1 client: responses
// crossing clients on a desynchronized pooled connection, abandoned uploads ejecting a healthy target,
// response splitting through Content-Length + Transfer-Encoding, a graceful stop cutting slow answers, a
// pooled connection reused while paused, a forged Forwarded node, the first-byte timeout cutting uploads,
// targets left unhealthy by a reload, and client connections stalled by paused or discarded bodies.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { describe, test } from 'node:test';
import { isValidHost } from '../../gateway/upstream-head.ts';
import { waitFor } from '../helpers.ts';
import { raw, responses } from '../http1/support.ts';
import {
  deadAddress,
  type Echo,
  echoed,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  rawUpstream,
  send,
  sendJson,
  sha256,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

const ROUTES = [{ name: 'all', match: { path: '/' }, upstream: 'u' }];

/** An HTTP/1.1 response with a Content-Length body. */
function answer(text: string): string {
  return `HTTP/1.1 200 OK\r\ncontent-length: ${text.length}\r\n\r\n${text}`;
}

/** Status lines in what a client received. */
function statusLines(text: string): string[] {
  return text.match(/HTTP\/1\.1 \d{3}/g) ?? [];
}

/** A raw client connection that records what it receives and when it ends. */
class RawClient {
  readonly socket: net.Socket;
  text = '';
  /** Milliseconds from the start until the server ended the connection (FIN or close), or -1. */
  endedAt = -1;
  readonly t0 = Date.now();

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.text += d.toString('latin1');
    });
    const ended = () => {
      if (this.endedAt === -1) this.endedAt = Date.now() - this.t0;
    };
    this.socket.on('end', ended);
    this.socket.on('close', ended);
    this.socket.on('error', () => {});
  }

  write(bytes: string | Buffer): boolean {
    return this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

describe('pooled upstream connections', () => {
  test('bytes beyond the framed response never reach the next client (an upstream answering twice)', async () => {
    const up = await rawUpstream((head, _body, socket) => {
      const path = head.split(' ')[1]!;
      if (path === '/alice') socket.write(answer('alice-private') + answer('alice-second-write'));
      else socket.write(answer(`for ${path}`));
    });
    const gw = await startTestGateway(gatewayConfig({ u: upstreamOf([up.address]) }, ROUTES));
    try {
      assert.equal((await send(gw.port, '/alice')).text, 'alice-private');
      for (const path of ['/bob', '/carol', '/dave']) {
        const r = await send(gw.port, path); // each on its own client connection
        assert.equal(r.status, 200, path);
        assert.equal(r.text, `for ${path}`, `${path} got another client's response`);
      }
    } finally {
      await gw.stop();
      await up.close();
    }
  });

  test('bytes an upstream sends on an idle pooled connection are never read as the next response', async () => {
    const up = await rawUpstream((head, _body, socket) => {
      const path = head.split(' ')[1]!;
      socket.write(answer(`for ${path}`));
      if (path === '/alice') setTimeout(() => socket.write(answer('unsolicited')), 30);
    });
    const gw = await startTestGateway(gatewayConfig({ u: upstreamOf([up.address]) }, ROUTES));
    try {
      assert.equal((await send(gw.port, '/alice')).text, 'for /alice');
      await sleep(100); // the unsolicited response arrives while the connection sits in the pool
      for (const path of ['/bob', '/carol']) {
        const r = await send(gw.port, path);
        assert.equal(r.status, 200, path);
        assert.equal(r.text, `for ${path}`, `${path} got bytes nobody asked for`);
      }
    } finally {
      await gw.stop();
      await up.close();
    }
  });

  test('a response whose last chunk met client backpressure does not leave its connection paused', async () => {
    const up = await httpUpstream((req, res) => {
      const body = Buffer.alloc(req.url === '/big' ? 4000 : 10, 0x61);
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    });
    const gw = await startTestGateway(
      gatewayConfig(
        { u: upstreamOf([up.address], { timeouts: { firstByte: 600, total: 3000 }, retries: 0 }) },
        ROUTES,
      ),
      { engine: { highWaterMark: 1024 } },
    );
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const big = await send(gw.port, '/big', { agent });
      assert.equal(big.status, 200);
      assert.equal(big.body.length, 4000);
      for (let i = 0; i < 2; i++) {
        const t0 = Date.now();
        const small = await send(gw.port, '/small', { agent });
        assert.equal(small.status, 200, `request ${i} after /big: ${small.text}`);
        assert.equal(small.body.length, 10);
        assert.ok(Date.now() - t0 < 500, `request ${i} after /big took ${Date.now() - t0} ms`);
      }
    } finally {
      agent.destroy();
      await gw.stop();
      await up.close();
    }
  });

  test('an upstream response with both Content-Length and Transfer-Encoding is refused (502)', async () => {
    const smuggled = 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nPWNED';
    const chunk = `xyz${smuggled}`;
    const up = await rawUpstream((_head, _body, socket) => {
      socket.write(
        'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n' +
          `${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`,
      );
    });
    const gw = await startTestGateway(gatewayConfig({ u: upstreamOf([up.address]) }, ROUTES));
    try {
      const { text } = await raw(gw.port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 300);
      assert.doesNotMatch(text, /PWNED/, 'the upstream body was passed on');
      assert.deepEqual(
        statusLines(text),
        ['HTTP/1.1 502'],
        `one 502 and nothing else: ${JSON.stringify(text)}`,
      );
      assert.equal(responses(text)[0]!.status, 502);
    } finally {
      await gw.stop();
      await up.close();
    }
  });
});

describe('target health', () => {
  test('clients abandoning their uploads do not eject a healthy target', async () => {
    const up = await httpUpstream(echoHandler('echo'));
    const gw = await startTestGateway(gatewayConfig({ u: upstreamOf([up.address]) }, ROUTES));
    try {
      assert.equal((await send(gw.port, '/x')).status, 200);
      // More abandoned uploads than passive.consecutiveFailures (5).
      for (let i = 0; i < 6; i++) {
        const c = new RawClient(gw.port);
        c.write('POST /upload HTTP/1.1\r\nHost: x\r\ncontent-length: 100000\r\n\r\npartial body');
        await sleep(40);
        c.destroy(); // give up mid-upload
        await sleep(15);
      }
      const r = await send(gw.port, '/x');
      assert.equal(r.status, 200, `after abandoned uploads: ${r.status} ${r.text}`);
    } finally {
      await gw.stop();
      await up.close();
    }
  });

  test('a reload that removes the health check re-admits targets the check had marked unhealthy', async () => {
    let healthy = false;
    const up = await httpUpstream((req, res) => {
      if (req.url === '/health') res.writeHead(healthy ? 200 : 500).end();
      else res.end('ok');
    });
    const check = { path: '/health', interval: 50, unhealthyThreshold: 1, healthyThreshold: 1 };
    const gw = await startTestGateway(
      gatewayConfig({ u: upstreamOf([up.address], { healthCheck: check, panicThreshold: 0 }) }, ROUTES),
    );
    try {
      await waitUntil(async () => (await send(gw.port, '/x')).status === 503, 2000, 'target unhealthy');
      healthy = true; // the target recovers, and the operator drops the check
      gw.source.set(gatewayConfig({ u: upstreamOf([up.address], { panicThreshold: 0 }) }, ROUTES));
      const reload = await gw.gateway.reload();
      assert.equal(reload.ok, true);
      let last = '';
      await waitUntil(
        async () => {
          const r = await send(gw.port, '/x');
          last = `${r.status} ${r.text}`;
          return r.status === 200;
        },
        1000,
        'the target back in rotation after the reload',
      ).catch((err: Error) => assert.fail(`${err.message}; last answer: ${last}`));
      assert.equal((await send(gw.port, '/x')).text, 'ok');
    } finally {
      await gw.stop();
      await up.close();
    }
  });
});

describe('graceful stop', () => {
  test('waits for an upstream answer still in progress', async () => {
    const up = await httpUpstream((_req, res) => {
      setTimeout(() => res.end('slow answer'), 600);
    });
    const gw = await startTestGateway(gatewayConfig({ u: upstreamOf([up.address]) }, ROUTES));
    let stopping: Promise<void> | null = null;
    try {
      const pending = send(gw.port, '/slow');
      await sleep(100);
      stopping = gw.stop(3000); // graceful, with a deadline well past the answer
      const r = await pending;
      assert.equal(r.status, 200, `${r.status} ${r.text}`);
      assert.equal(r.text, 'slow answer');
      await stopping;
    } finally {
      await (stopping ?? gw.stop());
      await up.close();
    }
  });
});

describe('Host and forwarding headers', () => {
  test('the Host check accepts exactly host[:port] with a reg-name, IPv4 or bracketed IPv6', () => {
    const valid = [
      'example.com',
      'example.com:8080',
      '127.0.0.1:9702',
      'a_b-c.d',
      '[::1]',
      '[::1]:443',
      '[2001:db8::1]:8080',
    ];
    const invalid = [
      '',
      ':80',
      'a:',
      'a:123456',
      'a:8o',
      'a:80:80',
      '[]',
      '[::1',
      '[::g]',
      '[::1]x',
      '[::1]:',
      'a b',
      'a,b',
      'a;b',
      'a"b',
      'é.example',
      'a/b',
    ];
    for (const host of valid) assert.equal(isValidHost(host), true, host);
    for (const host of invalid) assert.equal(isValidHost(host), false, host);
  });

  test('an invalid Host is refused (400) and never forges a Forwarded node', async () => {
    const up = await httpUpstream(echoHandler('echo'));
    const gw = await startTestGateway(gatewayConfig({ u: upstreamOf([up.address]) }, ROUTES));
    try {
      const forged = 'a", for=10.0.0.1;proto=https;host="internal';
      const { text } = await raw(gw.port, `GET / HTTP/1.1\r\nHost: ${forged}\r\n\r\n`, 300);
      const [r] = responses(text);
      if (r!.status === 200) {
        const echo = JSON.parse(r!.body) as Echo;
        assert.fail(`an invalid Host was forwarded; Forwarded: ${echoed(echo, 'forwarded')}`);
      }
      assert.equal(r!.status, 400);
      assert.equal(up.requests, 0, 'the request reached the upstream');
      // Commas and semicolons are reg-name characters in RFC 3986, but in X-Forwarded-Host a comma splits the
      // list for naive parsers: the gateway takes only letters, digits, '.', '-', '_' and IPv6 literals.
      for (const host of ['a,for=10.0.0.1;proto=https', 'a b', 'a;b=c']) {
        const refused = responses((await raw(gw.port, `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 300)).text);
        assert.equal(refused[0]!.status, 400, host);
      }
      assert.equal(up.requests, 0);

      // A well-formed Host still goes through, quoted in the gateway's own (last) Forwarded element.
      const ok = await sendJson<Echo>(gw.port, '/', { headers: { host: 'example.com:8080' } });
      assert.equal(ok.status, 200);
      assert.equal(echoed(ok.json, 'forwarded'), 'for=127.0.0.1;proto=http;host="example.com:8080"');
      assert.equal(echoed(ok.json, 'x-forwarded-host'), 'example.com:8080');
    } finally {
      await gw.stop();
      await up.close();
    }
  });
});

describe('timeouts and uploads', () => {
  test('the first-byte timeout does not cut an upload that takes longer than it', async () => {
    const up = await httpUpstream(echoHandler('echo'));
    const silent = await rawUpstream(() => {}); // reads whole requests, never answers
    const timeouts = { firstByte: 250, total: 5000 };
    const gw = await startTestGateway(
      gatewayConfig(
        {
          u: upstreamOf([up.address], { timeouts, retries: 0 }),
          s: upstreamOf([silent.address], { timeouts, retries: 0 }),
        },
        [{ name: 'silent', match: { path: '/silent' }, upstream: 's' }, ...ROUTES],
      ),
    );
    try {
      const piece = Buffer.alloc(8 * 1024, 0x62);
      const pieces = 8;
      const result = new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = http.request(
          {
            host: '127.0.0.1',
            port: gw.port,
            path: '/upload',
            method: 'POST',
            agent: false,
            headers: { 'content-length': piece.length * pieces },
          },
          (res) => {
            let text = '';
            res.on('data', (d: Buffer) => {
              text += d;
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          },
        );
        req.on('error', reject);
        let sent = 0;
        const next = () => {
          req.write(piece);
          if (++sent < pieces) setTimeout(next, 100);
          else req.end();
        };
        next();
      });
      const r = await result; // ~700 ms of upload, well past the 250 ms first-byte timeout
      assert.equal(r.status, 200, `${r.status} ${r.text}`);
      const echo = JSON.parse(r.text) as Echo;
      assert.equal(echo.bodyLength, piece.length * pieces);

      // Once the body is sent, the first-byte timeout still applies.
      const t0 = Date.now();
      const late = await send(gw.port, '/silent', { method: 'POST', body: 'short' });
      assert.equal(late.status, 504, late.text);
      assert.ok(Date.now() - t0 < 1500, `the first-byte timeout took ${Date.now() - t0} ms`);
    } finally {
      await gw.stop();
      await up.close();
      await silent.close();
    }
  });

  test('an upload stays in flight with a high-water mark below one read (no stall)', async () => {
    const up = await httpUpstream(echoHandler('echo'));
    const gw = await startTestGateway(
      gatewayConfig({ u: upstreamOf([up.address]) }, ROUTES, { http: { requestTimeout: 1500 } }),
      { engine: { highWaterMark: 16 * 1024 } },
    );
    try {
      const body = Buffer.alloc(1024 * 1024, 0x61);
      const t0 = Date.now();
      const r = await send(gw.port, '/upload', { method: 'POST', body });
      assert.equal(r.status, 200, r.text);
      const echo = JSON.parse(r.text) as Echo;
      assert.equal(echo.bodyLength, body.length);
      assert.equal(echo.bodySha, sha256(body));
      assert.ok(Date.now() - t0 < 1200, `the upload took ${Date.now() - t0} ms`);
    } finally {
      await gw.stop();
      await up.close();
    }
  });

  test('a discarded body after a 502 keeps the client connection usable for the next request', async () => {
    const dead = await deadAddress();
    const gw = await startTestGateway(
      gatewayConfig({ u: upstreamOf([dead], { retries: 0 }) }, ROUTES, { http: { requestTimeout: 3000 } }),
    );
    const c = new RawClient(gw.port);
    try {
      const body = Buffer.alloc(100 * 1024, 0x61);
      c.write(
        Buffer.concat([
          Buffer.from(`POST /a HTTP/1.1\r\nHost: x\r\ncontent-length: ${body.length}\r\n\r\n`),
          body,
        ]),
      );
      await sleep(100);
      c.write('GET /b HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor(() => statusLines(c.text).length >= 2 || c.endedAt !== -1, 1500, 'the second response');
      assert.deepEqual(statusLines(c.text), ['HTTP/1.1 502', 'HTTP/1.1 502']);
      assert.equal(c.endedAt, -1, 'the connection stays open');
    } finally {
      c.destroy();
      await gw.stop();
    }
  });

  /** Starts a 64 MiB upload to the gateway, writing as fast as the gateway takes it. */
  function upload(port: number): RawClient {
    const c = new RawClient(port);
    const total = 64 * 1024 * 1024;
    c.write(`POST /upload HTTP/1.1\r\nHost: x\r\ncontent-length: ${total}\r\n\r\n`);
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    const pump = () => {
      while (sent < total && c.endedAt === -1 && c.write(chunk)) sent += chunk.length;
    };
    c.socket.on('drain', pump);
    pump();
    return c;
  }

  /** An upstream that reads the request head, never the body, and answers `response` after `ms`. */
  async function earlyUpstream(response: string | null, ms: number) {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.once('data', () => {
        s.pause(); // never read the body
        if (response !== null) setTimeout(() => s.write(response), ms);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
      close: async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((r) => server.close(() => r()));
      },
    };
  }

  test('a response sent while the upload is paused closes the client connection (no freeze)', async () => {
    // The upstream never reads the body nor answers: the gateway answers 504 at the total timeout, while
    // the client's upload is paused for upstream backpressure.
    const up = await earlyUpstream(null, 0);
    const gw = await startTestGateway(
      gatewayConfig(
        { u: upstreamOf([up.address], { timeouts: { firstByte: 10_000, total: 300 }, retries: 0 }) },
        ROUTES,
        { http: { requestTimeout: 3000 } },
      ),
    );
    const c = upload(gw.port);
    try {
      await waitFor(() => c.endedAt !== -1, 1500, 'the gateway to end the client connection');
      assert.match(c.text, /^HTTP\/1\.1 504 /);
      assert.match(c.text, /\r\nconnection: close\r\n/i);
    } finally {
      c.destroy();
      await gw.stop(100);
      await up.close();
    }
  });

  // Upstream connections keep being read under outbound backpressure (Conn.pauseOnBackpressure = false),
  // so an answer sent before the upstream read the whole upload is read even with more than the
  // high-water mark queued toward it.
  test("an upstream's early answer while the upload is paused reaches the client, which is then closed", async () => {
    const up = await earlyUpstream('HTTP/1.1 401 Unauthorized\r\ncontent-length: 4\r\n\r\nnope', 300);
    const gw = await startTestGateway(
      gatewayConfig({ u: upstreamOf([up.address]) }, ROUTES, { http: { requestTimeout: 2000 } }),
    );
    const c = upload(gw.port);
    try {
      await waitFor(() => c.endedAt !== -1, 1500, 'the gateway to end the client connection');
      assert.match(c.text, /^HTTP\/1\.1 401 /, 'the upstream answer is passed on');
      assert.match(c.text, /\r\nconnection: close\r\n/i);
    } finally {
      c.destroy();
      await gw.stop(100);
      await up.close();
    }
  });
});
