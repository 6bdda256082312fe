// Fix review (bd9804c): `relayLimits` now counts the targets of every upstream of the version for every
// WebSocket route (so a relay a filter moved with useUpstream is not closed). It also means a reload that
// moves a route to another upstream no longer closes the route's WebSockets to the old upstream's targets
// as long as that upstream is still defined (here: it still serves another route). The README says a
// reload "that drops the route or its target" says 1001 to both sides; before the fix this one did.
import assert from 'node:assert/strict';
import type net from 'node:net';
import { describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { gatewayConfig, startTestGateway, upstreamOf, waitUntil } from '../support.ts';
import { stopServer } from '../websocket-support.ts';

async function echoServer(t: { after: (fn: () => unknown) => void }): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  t.after(() => stopServer(wss));
  wss.on('connection', (ws) => ws.on('message', (d) => ws.send(d)));
  return `127.0.0.1:${(wss.address() as net.AddressInfo).port}`;
}

const config = (v1: string, v2: string, wsUpstream: 'v1' | 'v2') =>
  gatewayConfig({ v1: upstreamOf([v1]), v2: upstreamOf([v2]) }, [
    { name: 'ws', match: { path: '/ws' }, upstream: wsUpstream, websocket: { closeTimeout: 200 } },
    { name: 'legacy', match: { path: '/legacy' }, upstream: 'v1' },
  ]);

describe('fix-review: a reload that moves a WebSocket route to another upstream', { timeout: 15_000 }, () => {
  test("closes the route's WebSockets to the old upstream's target (1001)", async (t) => {
    const v1 = await echoServer(t);
    const v2 = await echoServer(t);
    const gw = await startTestGateway(config(v1, v2, 'v1'));
    t.after(() => gw.stop());
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`);
    t.after(() => ws.terminate());
    let closed: number | null = null;
    ws.on('close', (code) => {
      closed = code;
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    gw.source.set(config(v1, v2, 'v2'));
    assert.equal((await gw.gateway.reload()).ok, true);
    // The route now reaches v2 only: its WebSocket to v1's target is told 1001 "route changed".
    await waitUntil(() => closed !== null, 1500, 'the WebSocket to close').catch(() => {});
    assert.equal(closed, 1001, "the route no longer reaches v1's target, yet its WebSocket stays open");
  });
});
