import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { sleep, waitUntil } from '../support.ts';
import {
  frame,
  gatewayFor,
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

const FIXTURES = new URL('./fixtures.ts', import.meta.url).href;

describe('ws-review: handshake', () => {
  test('a frame pipelined right behind the upgrade request (before the 101) reaches the upstream', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const c = await rawClient(gw.port, '/', '', frame(0x1, Buffer.from('early')));
    t.after(() => c.socket.destroy());
    await waitUntil(() => parseFrames(c.received()).frames.length >= 1, 3000, 'echo of the early frame');
    const f = parseFrames(c.received()).frames[0]!;
    assert.equal(f.opcode, 0x1);
    assert.equal(f.payload.toString(), 'early');
  });

  test('a frame the upstream sends in the same packet as its 101 reaches the client', async (t) => {
    const up = await rawWsUpstream((socket, s) => {
      socket.write(
        Buffer.concat([Buffer.from(switching(s.key), 'latin1'), serverFrame(0x1, Buffer.from('hello'))]),
      );
    });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const c = await rawClient(gw.port);
    t.after(() => c.socket.destroy());
    await waitUntil(() => parseFrames(c.received()).frames.length >= 1, 3000, 'the frame after the 101');
    assert.equal(parseFrames(c.received()).frames[0]!.payload.toString(), 'hello');
  });

  test('101 + frame + FIN in one packet: the client gets the frame, then the relay ends and is counted gone', async (t) => {
    const up = await rawWsUpstream((socket, s) => {
      socket.end(
        Buffer.concat([Buffer.from(switching(s.key), 'latin1'), serverFrame(0x1, Buffer.from('bye'))]),
      );
    });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const c = await rawClient(gw.port);
    t.after(() => c.socket.destroy());
    await waitUntil(() => parseFrames(c.received()).frames.length >= 1, 3000, 'frame');
    assert.equal(parseFrames(c.received()).frames[0]!.payload.toString(), 'bye');
    await waitUntil(() => c.ended(), 3000, 'client connection closed');
    await waitStats(
      gw,
      (s) => s.websockets === 0 && s.target.active === 0 && s.target.pool.open === 0,
      'relay gone',
    );
  });

  test('the client leaves while the upstream handshake is in flight: target.active and the pool slot come back', async (t) => {
    const up = await rawWsUpstream(() => {
      /* never answers */
    });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const r = await rawSocket(gw.port);
    r.socket.write(upgradeRequest(randomBytes(16).toString('base64')));
    await waitUntil(
      () => up.conns.length === 1 && up.conns[0]!.head !== null,
      3000,
      'upstream got the request',
    );
    r.socket.destroy();
    await waitUntil(() => up.conns[0]!.ended, 3000, 'upstream connection aborted');
    await waitStats(gw, (s) => s.target.active === 0 && s.target.pool.open === 0, 'accounting back to 0');
  });

  test('a 101 the gateway cannot forward (a filter adds a bad header name): 502, and the pool counts the connection once', async (t) => {
    const up = await wsUpstream();
    t.after(() => up.close());
    const gw2 = await gatewayFor(
      up.address,
      { filters: [{ name: 'review-add-response-header', header: 'bad name', value: 'v' }] },
      { plugins: [FIXTURES] },
    );
    t.after(() => gw2.stop());
    const r = await rawSocket(gw2.port);
    t.after(() => r.socket.destroy());
    r.socket.write(upgradeRequest(randomBytes(16).toString('base64')));
    await waitUntil(() => r.all().includes('\r\n\r\n'), 3000, 'answer');
    assert.match(r.all().toString('latin1'), /^HTTP\/1\.1 502 /);
    await waitUntil(() => up.sockets.length === 1, 2000, 'upstream socket');
    await waitStats(gw2, (s) => s.target.active === 0, 'active 0');
    await sleep(1200); // a stats period
    await waitStats(gw2, (s) => s.target.pool.open === 0, 'pool open 0');
  });

  test('data the upstream sends right after a 101 answering a plain (non-upgrade) request is not relayed; the client gets 502', async (t) => {
    const up = await rawWsUpstream((socket, s) => {
      socket.write(
        Buffer.concat([Buffer.from(switching(s.key), 'latin1'), serverFrame(0x1, Buffer.from('x'))]),
      );
    });
    t.after(() => up.close());
    const gw = await gatewayFor(up.address);
    t.after(() => gw.stop());
    const r = await rawSocket(gw.port);
    t.after(() => r.socket.destroy());
    r.socket.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitUntil(() => r.all().includes('\r\n\r\n'), 3000, 'answer');
    assert.match(r.all().toString('latin1'), /^HTTP\/1\.1 502 /);
    await waitStats(gw, (s) => s.target.active === 0 && s.target.pool.open === 0, 'accounting');
  });
});
