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
import { raw, responses, startHttp } from './support.ts';

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
