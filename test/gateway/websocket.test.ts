// WebSockets through the gateway (issue 14): the route's filters run on the upgrade request, a target of
// its upstream answers it, frames pass through both ways unchanged (permessage-deflate negotiated end to
// end), the gateway enforces the framing rules and the route's limits with the right close codes, the
// connections survive reloads that keep their route, and shutdown says 1001. ws is the client and the
// upstream; raw sockets send the bad bytes.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import { describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import {
  gatewayConfig,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';
import { frame, stopServer } from './websocket-support.ts';

const FILTERS = new URL('./fixtures/websocket-filters.ts', import.meta.url).href;

/** A ws upstream that echoes every message, and records what it saw. */
async function wsUpstream(options: { perMessageDeflate?: boolean; name?: string } = {}) {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: options.perMessageDeflate ?? false,
    handleProtocols: (protocols) => (protocols.has('chat') ? 'chat' : false),
  });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const state = {
    wss,
    address: `127.0.0.1:${(wss.address() as net.AddressInfo).port}`,
    requests: [] as http.IncomingMessage[],
    sockets: [] as WebSocket[],
    closes: [] as { code: number; reason: string }[],
    close: () => stopServer(wss),
  };
  wss.on('connection', (ws, req) => {
    state.requests.push(req);
    state.sockets.push(ws);
    ws.on('message', (data, binary) => {
      const text = binary ? null : data.toString();
      if (text === 'who') ws.send(options.name ?? 'upstream');
      else ws.send(data, { binary });
    });
    ws.on('close', (code, reason) => state.closes.push({ code, reason: reason.toString() }));
    ws.on('error', () => {});
  });
  return state;
}

/** Opens a ws client; rejects with the status of a non-101 answer. */
function openWs(
  url: string,
  options: { protocols?: string[]; headers?: Record<string, string>; perMessageDeflate?: boolean } = {},
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocols ?? [], {
      headers: options.headers,
      perMessageDeflate: options.perMessageDeflate ?? false,
    });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () =>
        reject(
          Object.assign(new Error(`status ${res.statusCode}`), {
            status: res.statusCode,
            body,
            headers: res.headers,
          }),
        ),
      );
    });
    ws.once('error', reject);
  });
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> {
  return new Promise((resolve) =>
    ws.once('message', (data: Buffer, binary: boolean) => resolve({ data, binary })),
  );
}

function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve({ code: -1, reason: 'already closed' });
  return new Promise((resolve) =>
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() })),
  );
}

async function gatewayFor(
  upstreamAddress: string,
  route: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) {
  return startTestGateway(
    gatewayConfig(
      { up: upstreamOf([upstreamAddress]) },
      [{ name: 'ws', match: { path: '/' }, upstream: 'up', ...route }],
      { plugins: [FILTERS], ...extra },
    ),
  );
}

/** A raw client: sends a handshake through the gateway, and gives the socket once the 101 arrived. */
async function rawClient(
  port: number,
  path = '/',
): Promise<{ socket: net.Socket; received: () => Buffer; length: () => number }> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const key = randomBytes(16).toString('base64');
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const chunks: Buffer[] = [];
  let length = 0;
  socket.on('data', (d: Buffer) => {
    chunks.push(d);
    length += d.length;
  });
  // Joined when asked (a test reading megabytes must not copy them on every read).
  let joined = Buffer.alloc(0);
  const all = () => {
    if (joined.length !== length) joined = Buffer.concat(chunks, length);
    return joined;
  };
  await waitUntil(() => all().includes('\r\n\r\n'), 5000, '101');
  const data = all();
  const end = data.indexOf('\r\n\r\n') + 4;
  const head = data.subarray(0, end).toString('latin1');
  assert.match(head, /^HTTP\/1\.1 101 /);
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  assert.match(head, new RegExp(`sec-websocket-accept: ${accept.replace(/[+/]/g, '\\$&')}`, 'i'));
  const start = end;
  return { socket, received: () => all().subarray(start), length: () => length - start };
}

/** The first close frame in server-to-client bytes: its code. */
function closeCodeIn(bytes: Buffer): number | null {
  let p = 0;
  while (p + 2 <= bytes.length) {
    const opcode = bytes[p]! & 0x0f;
    let len = bytes[p + 1]! & 0x7f;
    let h = 2;
    if (len === 126) {
      len = bytes.readUInt16BE(p + 2);
      h = 4;
    } else if (len === 127) {
      len = Number(bytes.readBigUInt64BE(p + 2));
      h = 10;
    }
    if (opcode === 0x8) return len >= 2 ? bytes.readUInt16BE(p + h) : 1005;
    p += h + len;
  }
  return null;
}

describe('WebSocket proxy', () => {
  test('text and binary echo through the gateway; subprotocol and permessage-deflate negotiated end to end', async (t) => {
    const up = await wsUpstream({ perMessageDeflate: true });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, {
      match: { path: '/live' },
      rewrite: { replacePrefix: { from: '/live', to: '/room' } },
    });
    t.after(() => gw.stop());
    const ws = await openWs(`ws://127.0.0.1:${gw.port}/live/7?u=1`, {
      protocols: ['chat', 'other'],
      perMessageDeflate: true,
    });
    assert.equal(ws.protocol, 'chat');
    assert.match(ws.extensions, /permessage-deflate/);
    ws.send('hello');
    const text = await nextMessage(ws);
    assert.equal(text.binary, false);
    assert.equal(text.data.toString(), 'hello');
    const big = randomBytes(300_000); // several reads and frames through the relay, compressed both ways
    ws.send(big);
    const echoed = await nextMessage(ws);
    assert.equal(echoed.binary, true);
    assert.ok(echoed.data.equals(big));
    // The upstream saw the rewritten path and the proxy's fields.
    const req = up.requests[0]!;
    assert.equal(req.url, '/room/7?u=1');
    assert.equal(req.headers['x-forwarded-for'], '127.0.0.1');
    assert.ok(req.headers['x-request-id']);
    ws.close(4001, 'bye');
    assert.deepEqual(await closed(ws), { code: 4001, reason: 'bye' });
    await waitUntil(() => up.closes.length === 1, 2000, 'upstream close');
    assert.deepEqual(up.closes[0], { code: 4001, reason: 'bye' });
  });

  test('a fragmented message with pings between the fragments passes through', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const { socket, received } = await rawClient(gw.port);
    t.after(() => socket.destroy());
    socket.write(
      Buffer.concat([
        frame(0x1, Buffer.from('hel'), { fin: false }),
        frame(0x9, Buffer.from('p')),
        frame(0x0, Buffer.from('lo'), { fin: false }),
        frame(0x0, Buffer.from(' world')),
      ]),
    );
    // ws answers the ping with a pong (0x8a), and echoes the whole message (0x81).
    await waitUntil(() => received().includes(Buffer.from('hello world')), 2000, 'echo');
    assert.ok(received().includes(Buffer.from([0x8a, 0x01, 0x70])));
  });

  test('the route filters run on the upgrade request: refused without the token, through with it', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, {
      filters: [{ name: 'require-token', token: 's3cret' }, { name: 'mark-upgrade' }],
    });
    t.after(() => gw.stop());
    const refused = await openWs(`ws://127.0.0.1:${gw.port}/`).then(
      () => assert.fail('opened'),
      (e: { status: number }) => e,
    );
    assert.equal(refused.status, 401);
    assert.equal(up.requests.length, 0);
    const opened = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/`, { headers: { authorization: 'Bearer s3cret' } });
      ws.once('upgrade', (res) => {
        resolve(res);
        ws.close();
      });
      ws.once('error', reject);
    });
    assert.equal(opened.headers['x-gateway-mark'], '101');
    assert.equal(up.requests.length, 1);
  });

  test('an onUpstreamResponse filter that turns the 101 into 403 answers the client, and the upstream WebSocket is dropped', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { filters: [{ name: 'mark-upgrade', status: 403 }] });
    t.after(() => gw.stop());
    const e = await openWs(`ws://127.0.0.1:${gw.port}/`).then(
      () => assert.fail('opened'),
      (err: { status: number }) => err,
    );
    assert.equal(e.status, 403);
    await waitUntil(() => up.closes.length === 1, 2000, 'upstream socket dropped');
  });

  test('an upstream that refuses the upgrade: its answer reaches the client; a wrong accept is a 502', async (t) => {
    const refusing = await httpUpstream((_req, res) => {
      res.writeHead(426, { 'sec-websocket-version': '13', 'content-type': 'text/plain' });
      res.end('upgrade required');
    });
    t.after(() => refusing.close());
    const gw = await gatewayFor(refusing.address);
    t.after(() => gw.stop());
    const e = await openWs(`ws://127.0.0.1:${gw.port}/`).then(
      () => assert.fail('opened'),
      (err: { status: number; body: string }) => err,
    );
    assert.equal(e.status, 426);
    assert.equal(e.body, 'upgrade required');

    const liar = net.createServer((s) => {
      s.once('data', () =>
        s.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            'Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
        ),
      );
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => liar.listen(0, '127.0.0.1', resolve));
    t.after(() => liar.close());
    await gw.source.set(
      gatewayConfig(
        { up: upstreamOf([`127.0.0.1:${(liar.address() as net.AddressInfo).port}`], { retries: 0 }) },
        [{ name: 'ws', match: { path: '/' }, upstream: 'up' }],
        { plugins: [FILTERS] },
      ),
    );
    await gw.gateway.reload();
    const bad = await openWs(`ws://127.0.0.1:${gw.port}/`).then(
      () => assert.fail('opened'),
      (err: { status: number; body: string }) => err,
    );
    assert.equal(bad.status, 502);
    assert.match(bad.body, /invalid WebSocket handshake/);
  });

  test('a message past maxMessageSize: the client gets 1009, the upstream 1001; fragments count together', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { websocket: { maxMessageSize: 1000 } });
    t.after(() => gw.stop());
    const ws = await openWs(`ws://127.0.0.1:${gw.port}/`);
    ws.send(Buffer.alloc(1000, 1)); // at the limit: fine
    assert.equal((await nextMessage(ws)).data.length, 1000);
    ws.send(Buffer.alloc(1001, 1));
    assert.equal((await closed(ws)).code, 1009);
    await waitUntil(() => up.closes.length === 1, 2000, 'upstream told');
    assert.equal(up.closes[0]!.code, 1001);

    // Fragments: 600 + 600 bytes break the limit on the second fragment; nothing of it reaches the upstream.
    const { socket, received } = await rawClient(gw.port);
    t.after(() => socket.destroy());
    const before = up.closes.length;
    socket.write(frame(0x2, Buffer.alloc(600), { fin: false }));
    socket.write(frame(0x0, Buffer.alloc(600)));
    await waitUntil(() => closeCodeIn(received()) !== null, 2000, 'close frame');
    assert.equal(closeCodeIn(received()), 1009);
    await new Promise<void>((resolve) =>
      socket.destroyed ? resolve() : socket.once('close', () => resolve()),
    );
    await waitUntil(() => up.closes.length === before + 1, 2000, 'upstream told');
    assert.equal(up.closes[before]!.code, 1001);
  });

  test('an upstream message past maxMessageSize: the client hears 1014 (bad gateway)', async (t) => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    t.after(() => stopServer(wss));
    const upstreamCloses: number[] = [];
    wss.on('connection', (s) => {
      s.send(Buffer.alloc(5000));
      s.on('close', (code) => upstreamCloses.push(code));
    });
    const gw = await gatewayFor(`127.0.0.1:${(wss.address() as net.AddressInfo).port}`, {
      websocket: { maxMessageSize: 4096 },
    });
    t.after(() => gw.stop());
    const ws = await openWs(`ws://127.0.0.1:${gw.port}/`);
    let got = 0;
    ws.on('message', () => got++);
    assert.equal((await closed(ws)).code, 1014);
    assert.equal(got, 0);
    await waitUntil(() => upstreamCloses.length === 1, 2000, 'upstream close');
    assert.equal(upstreamCloses[0], 1009);
  });

  test('framing rules: an unmasked client frame, a fragmented ping, a 126-byte ping, a stray continuation, opcode 3: 1002 each', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const cases: [string, Buffer][] = [
      ['unmasked', frame(0x1, Buffer.from('hi'), { mask: false })],
      ['fragmented ping', frame(0x9, Buffer.from('p'), { fin: false })],
      ['long ping', frame(0x9, Buffer.alloc(126))],
      ['stray continuation', frame(0x0, Buffer.from('x'))],
      ['reserved opcode', frame(0x3, Buffer.from('x'))],
      [
        'data frame inside a fragmented message',
        Buffer.concat([frame(0x1, Buffer.from('a'), { fin: false }), frame(0x1, Buffer.from('b'))]),
      ],
      [
        '64-bit length with the top bit set',
        Buffer.from([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4]),
      ],
      ['RSV1 without a negotiated extension', Buffer.from([0xc1, 0x80, 1, 2, 3, 4])],
      ['a close frame with a 1-byte body', frame(0x8, Buffer.from([3]))],
    ];
    for (const [what, bytes] of cases) {
      const { socket, received } = await rawClient(gw.port);
      socket.write(bytes);
      await waitUntil(() => closeCodeIn(received()) !== null, 2000, `close for ${what}`);
      assert.equal(closeCodeIn(received()), 1002, what);
      // The offender's connection is cut (not left open).
      await waitUntil(() => socket.destroyed || socket.readableEnded, 2000, `${what}: connection closed`);
      socket.destroy();
    }
    // Nothing of the bad frames reached the upstream as a message: each upstream socket was told 1001.
    await waitUntil(() => up.closes.length === cases.length, 3000, 'upstream closes');
    assert.ok(up.closes.every((c) => c.code === 1001));
  });

  test('idle timeout: both sides get 1001 after the idle time; traffic (pings) keeps it open', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { websocket: { idleTimeout: 400 } });
    t.after(() => gw.stop());
    const ws = await openWs(`ws://127.0.0.1:${gw.port}/`);
    const start = Date.now();
    let quiet = start;
    // Pings every 150 ms for 800 ms keep it alive (longer than the idle time).
    while (Date.now() - start < 800) {
      ws.ping();
      quiet = Date.now();
      await sleep(150);
    }
    assert.equal(ws.readyState, WebSocket.OPEN);
    const c = await closed(ws);
    assert.equal(c.code, 1001);
    assert.equal(c.reason, 'idle timeout');
    const waited = Date.now() - quiet;
    assert.ok(waited >= 300 && waited < 2000, `closed after ${waited} ms`);
    await waitUntil(() => up.closes.length === 1, 2000, 'upstream close');
    assert.equal(up.closes[0]!.code, 1001);
  });

  test('maxLifetime closes a busy connection with 1001', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { websocket: { maxLifetime: 500, idleTimeout: 0 } });
    t.after(() => gw.stop());
    const ws = await openWs(`ws://127.0.0.1:${gw.port}/`);
    const timer = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('x'), 50);
    t.after(() => clearInterval(timer));
    const c = await closed(ws);
    assert.deepEqual(c, { code: 1001, reason: 'connection lifetime over' });
  });

  test('a client that never answers the close is cut after closeTimeout', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { websocket: { idleTimeout: 200, closeTimeout: 300 } });
    t.after(() => gw.stop());
    const { socket, received } = await rawClient(gw.port);
    t.after(() => socket.destroy());
    const start = Date.now();
    await waitUntil(() => closeCodeIn(received()) !== null, 2000, 'close frame');
    assert.equal(closeCodeIn(received()), 1001);
    await new Promise<void>((resolve) =>
      socket.destroyed ? resolve() : socket.once('close', () => resolve()),
    );
    const took = Date.now() - start;
    assert.ok(took >= 400 && took < 3000, `cut after ${took} ms`);
  });

  test('a client that answers the close is closed at once (no close timeout wait)', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { websocket: { idleTimeout: 200, closeTimeout: 5000 } });
    t.after(() => gw.stop());
    const ws = await openWs(`ws://127.0.0.1:${gw.port}/`);
    const start = Date.now();
    await closed(ws);
    assert.ok(Date.now() - start < 2000);
  });

  test('reloads: one that keeps the route keeps the connection (and applies new limits); one that drops it says 1001', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const config = (route: Record<string, unknown>, routes: Record<string, unknown>[] = []) =>
      gatewayConfig({ up: upstreamOf([up.address]) }, [
        { name: 'ws', match: { path: '/ws' }, upstream: 'up', ...route },
        ...routes,
      ]);
    const gw = await startTestGateway(config({}));
    t.after(() => gw.stop());
    const ws = await openWs(`ws://127.0.0.1:${gw.port}/ws`);
    // Reload 1: another route added, this one unchanged.
    await gw.source.set(config({}, [{ name: 'other', match: { path: '/other' }, upstream: 'up' }]));
    assert.equal((await gw.gateway.reload()).ok, true);
    ws.send('still');
    assert.equal((await nextMessage(ws)).data.toString(), 'still');
    // Reload 2: the route gets a message limit, applied to the live connection.
    await gw.source.set(config({ websocket: { maxMessageSize: 10 } }));
    assert.equal((await gw.gateway.reload()).ok, true);
    ws.send('short');
    assert.equal((await nextMessage(ws)).data.toString(), 'short');
    const ws2 = await openWs(`ws://127.0.0.1:${gw.port}/ws`);
    ws.send('far too long for ten');
    assert.equal((await closed(ws)).code, 1009);
    // Reload 3: the route is gone: its WebSockets hear 1001.
    await gw.source.set(
      gatewayConfig({ up: upstreamOf([up.address]) }, [
        { name: 'renamed', match: { path: '/x' }, upstream: 'up' },
      ]),
    );
    assert.equal((await gw.gateway.reload()).ok, true);
    assert.deepEqual(await closed(ws2), { code: 1001, reason: 'route changed' });
  });

  test('stopping the gateway tells every WebSocket 1001 and both sides close', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    const sockets = await Promise.all([1, 2, 3].map(() => openWs(`ws://127.0.0.1:${gw.port}/`)));
    const closes = sockets.map(closed);
    await gw.stop(3000);
    for (const c of await Promise.all(closes))
      assert.deepEqual(c, { code: 1001, reason: 'server shutting down' });
    await waitUntil(() => up.closes.length === 3, 2000, 'upstream closes');
    assert.ok(up.closes.every((c) => c.code === 1001));
  });

  test('an upgraded connection leaves the pool: with maxConnections 1, plain requests still go through', async (t) => {
    const wss = new WebSocketServer({ noServer: true });
    const upstream = await httpUpstream((_req, res) => res.end('plain'));
    upstream.server.on('upgrade', (req, socket, head) =>
      wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (d, b) => ws.send(d, { binary: b }))),
    );
    t.after(() => upstream.close());
    const gw = await gatewayFor(upstream.address, {});
    t.after(() => gw.stop());
    await gw.source.set(
      gatewayConfig(
        { up: upstreamOf([upstream.address], { pool: { maxConnections: 1, queueTimeout: 500 } }) },
        [{ name: 'ws', match: { path: '/' }, upstream: 'up' }],
      ),
    );
    await gw.gateway.reload();
    assert.equal((await send(gw.port, '/')).text, 'plain'); // a pooled keep-alive connection now idles
    const sockets = await Promise.all([1, 2, 3].map(() => openWs(`ws://127.0.0.1:${gw.port}/`)));
    for (const ws of sockets) {
      ws.send('m');
      assert.equal((await nextMessage(ws)).data.toString(), 'm');
    }
    for (let i = 0; i < 3; i++) assert.equal((await send(gw.port, '/')).text, 'plain');
    for (const ws of sockets) ws.close();
  });

  test('either side leaving ends the other: the upstream terminates, then the client does', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const ws = await openWs(`ws://127.0.0.1:${gw.port}/`);
    await waitUntil(() => up.sockets.length === 1, 2000, 'upstream socket');
    up.sockets[0]!.terminate();
    assert.equal((await closed(ws)).code, 1006);
    const ws2 = await openWs(`ws://127.0.0.1:${gw.port}/`);
    await waitUntil(() => up.sockets.length === 2, 2000, 'upstream socket');
    ws2.terminate();
    await waitUntil(() => up.closes.length === 2, 2000, 'upstream sees the client gone');
    assert.equal(up.closes[1]!.code, 1006);
  });

  test('a client that sends its close and its FIN still gets the upstream close answer', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const { socket, received } = await rawClient(gw.port);
    t.after(() => socket.destroy());
    socket.end(frame(0x8, Buffer.from([0x03, 0xe8, 0x62, 0x79, 0x65]))); // 1000 "bye", then FIN
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    assert.equal(closeCodeIn(received()), 1000);
    await waitUntil(() => up.closes.length === 1, 2000, 'upstream close');
    assert.deepEqual(up.closes[0], { code: 1000, reason: 'bye' });
  });

  test('backpressure: a client that stops reading stops the upstream, and loses nothing', async (t) => {
    const total = 48 * 1024 * 1024;
    let sentAll = false;
    let upstreamBuffered = 0;
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    t.after(() => stopServer(wss));
    wss.on('connection', (s) => {
      for (let k = 0; k < total / 65536; k++) {
        const chunk = Buffer.alloc(65536); // ws queues a reference: one buffer per frame
        chunk.writeUInt32BE(k, 0);
        s.send(chunk);
      }
      sentAll = true;
      const timer = setInterval(() => (upstreamBuffered = s.bufferedAmount), 50);
      s.on('close', () => clearInterval(timer));
    });
    const gw = await gatewayFor(`127.0.0.1:${(wss.address() as net.AddressInfo).port}`);
    t.after(() => gw.stop());
    const { socket, received, length } = await rawClient(gw.port);
    t.after(() => socket.destroy());
    socket.pause(); // reads nothing for a while
    await sleep(800);
    assert.ok(sentAll);
    // Most of what the upstream queued is still in its own buffer: the gateway did not read it all in.
    assert.ok(upstreamBuffered > total / 2, `upstream still holds ${upstreamBuffered} bytes`);
    socket.resume();
    await waitUntil(() => length() >= total + (total / 65536) * 10, 15_000, 'all frames');
    // Every frame arrived, in order.
    const bytes = received();
    let p = 0;
    for (let k = 0; k < total / 65536; k++) {
      assert.equal(bytes[p], 0x82);
      assert.equal(bytes[p + 1], 126 + 1); // 64-bit length form for 65536
      const len = Number(bytes.readBigUInt64BE(p + 2));
      assert.equal(len, 65536);
      assert.equal(bytes.readUInt32BE(p + 10), k);
      p += 10 + len;
    }
  });

  test('websocket.enabled false: Upgrade is dropped like any hop-by-hop field, the upstream sees a plain GET', async (t) => {
    const seen: http.IncomingHttpHeaders[] = [];
    const plain = await httpUpstream((req, res) => {
      seen.push(req.headers);
      res.end('plain');
    });
    t.after(() => plain.close());
    const gw = await gatewayFor(plain.address, { websocket: { enabled: false } });
    t.after(() => gw.stop());
    const e = await openWs(`ws://127.0.0.1:${gw.port}/`).then(
      () => assert.fail('opened'),
      (err: { status: number }) => err,
    );
    assert.equal(e.status, 200);
    assert.equal(seen[0]!.upgrade, undefined);
  });

  test('a route to an HTTP/2 upstream answers an upgrade 501; an upgrade with a body is a 400', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await startTestGateway(
      gatewayConfig({ h2: upstreamOf([up.address], { protocol: 'http2' }), up: upstreamOf([up.address]) }, [
        { name: 'h2', match: { path: '/h2' }, upstream: 'h2' },
        { name: 'ws', match: { path: '/' }, upstream: 'up' },
      ]),
    );
    t.after(() => gw.stop());
    const e = await openWs(`ws://127.0.0.1:${gw.port}/h2`).then(
      () => assert.fail('opened'),
      (err: { status: number }) => err,
    );
    assert.equal(e.status, 501);
    const withBody = await send(gw.port, '/', {
      headers: {
        connection: 'upgrade',
        upgrade: 'websocket',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        'sec-websocket-version': '13',
        'content-length': '3',
      },
      body: 'abc',
    });
    assert.equal(withBody.status, 400);
  });
});
