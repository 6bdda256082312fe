import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { gatewayConfig, sleep, upstreamOf, waitUntil } from '../support.ts';
import {
  closed,
  gatewayFor,
  nextMessage,
  openWs,
  parseFrames,
  rawClient,
  rawSocket,
  rawWsUpstream,
  serverFrame,
  switching,
  upgradeRequest,
  waitStats,
  wsUpstream,
} from './helpers.ts';

/** An upstream that answers 101 `delay` ms after the request, then echoes nothing. */
async function slowUpstream(delay: number) {
  return rawWsUpstream((socket, s) => {
    setTimeout(() => {
      if (!socket.destroyed) socket.write(switching(s.key));
    }, delay);
  });
}

describe('ws-review: lifecycle', () => {
  test('a reload that drops the route while the upstream handshake is in flight: the WebSocket that opens after it hears 1001', async (t) => {
    const up = await slowUpstream(600);
    t.after(() => up.close());
    const other = await wsUpstream();
    t.after(() => other.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const r = await rawSocket(gw.port);
    t.after(() => r.socket.destroy());
    r.socket.write(upgradeRequest(randomBytes(16).toString('base64')));
    await waitUntil(
      () => up.conns.length === 1 && up.conns[0]!.head !== null,
      3000,
      'upstream got the request',
    );
    await gw.source.set(
      gatewayConfig({ o: upstreamOf([other.address]) }, [
        { name: 'renamed', match: { path: '/x' }, upstream: 'o' },
      ]),
    );
    assert.equal((await gw.gateway.reload()).ok, true);
    // The 101 arrives after the reload: the route is gone, so the client must be told (1001), not kept forever.
    await waitUntil(() => r.all().includes('\r\n\r\n'), 3000, 'answer');
    const head = r.all().toString('latin1');
    if (/^HTTP\/1\.1 101 /.test(head)) {
      const start = r.all().indexOf('\r\n\r\n') + 4;
      await waitUntil(
        () => parseFrames(r.all().subarray(start)).frames.some((f) => f.opcode === 0x8),
        3000,
        'a close frame for the relay whose route is gone',
      );
      const f = parseFrames(r.all().subarray(start)).frames.find((x) => x.opcode === 0x8)!;
      assert.equal(f.payload.readUInt16BE(0), 1001);
    }
  });

  test('a stop while the upstream handshake is in flight: the WebSocket that opens during the stop hears 1001', async (t) => {
    const up = await slowUpstream(300);
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    const r = await rawSocket(gw.port);
    t.after(() => r.socket.destroy());
    r.socket.write(upgradeRequest(randomBytes(16).toString('base64')));
    await waitUntil(
      () => up.conns.length === 1 && up.conns[0]!.head !== null,
      3000,
      'upstream got the request',
    );
    const stopping = gw.stop(4000);
    const started = Date.now();
    await waitUntil(() => r.all().includes('\r\n\r\n'), 3000, 'answer');
    const head = r.all().toString('latin1');
    if (/^HTTP\/1\.1 101 /.test(head)) {
      const start = r.all().indexOf('\r\n\r\n') + 4;
      await waitUntil(() => r.ended(), 6000, 'closed');
      const frames = parseFrames(r.all().subarray(start)).frames;
      const took = Date.now() - started;
      assert.ok(
        frames.some((f) => f.opcode === 0x8 && f.payload.readUInt16BE(0) === 1001),
        `no 1001 close frame; the connection was cut after ${took} ms`,
      );
    }
    await stopping;
  });

  test('maxLifetime while the upstream is mid-frame: the client gets the whole frame, then 1001 (never a close inside it)', async (t) => {
    let sock: import('node:net').Socket | null = null;
    const up = await rawWsUpstream((socket, s) => {
      sock = socket;
      const f = serverFrame(0x2, Buffer.alloc(1000, 7));
      socket.write(Buffer.concat([Buffer.from(switching(s.key), 'latin1'), f.subarray(0, 504)]));
      setTimeout(() => socket.write(f.subarray(504)), 700);
    });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address, { websocket: { maxLifetime: 300, idleTimeout: 0 } });
    t.after(() => gw.stop());
    const c = await rawClient(gw.port);
    t.after(() => c.socket.destroy());
    await waitUntil(() => parseFrames(c.received()).frames.length >= 2, 3000, 'two frames');
    const frames = parseFrames(c.received()).frames;
    assert.equal(frames[0]!.opcode, 0x2);
    assert.equal(frames[0]!.payload.length, 1000);
    assert.ok(frames[0]!.payload.every((b) => b === 7));
    assert.equal(frames[1]!.opcode, 0x8);
    assert.equal(frames[1]!.payload.readUInt16BE(0), 1001);
    assert.ok(sock !== null);
  });

  test('least_connections: an open WebSocket counts on its target, and stops counting once it closes', async (t) => {
    const a = await wsUpstream({ name: 'a' });
    const b = await wsUpstream({ name: 'b' });
    t.after(() => a.close());
    t.after(() => b.close());
    const gw = await gatewayFor([a.address, b.address], {}, {}, { balance: 'least_connections' });
    t.after(() => gw.stop());
    const ws1 = await openWs(`ws://127.0.0.1:${gw.port}/`);
    ws1.send('who');
    const first = (await nextMessage(ws1)).toString();
    const ws2 = await openWs(`ws://127.0.0.1:${gw.port}/`);
    ws2.send('who');
    const second = (await nextMessage(ws2)).toString();
    assert.notEqual(first, second);
    ws1.close();
    ws2.close();
    await closed(ws1);
    await closed(ws2);
    await waitStats(gw, (s) => s.websockets === 0 && s.target.active === 0, 'a: 0', 0);
    await waitStats(gw, (s) => s.target.active === 0, 'b: 0', 1);
  });

  test('the 101 answers the upgrade with exactly websocket in Upgrade, even when the client offered more than one protocol', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const r = await rawSocket(gw.port);
    t.after(() => r.socket.destroy());
    const key = randomBytes(16).toString('base64');
    r.socket.write(
      `GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo/1, websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    await waitUntil(() => r.all().includes('\r\n\r\n'), 3000, 'answer');
    const head = r.all().toString('latin1');
    assert.match(head, /^HTTP\/1\.1 101 /);
    assert.match(head, /\r\nupgrade: websocket\r\n/i, head);
  });
});
void sleep;
