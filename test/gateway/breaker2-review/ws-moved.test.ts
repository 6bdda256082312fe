// Review (breaker2-review): a WebSocket a filter sent to another upstream with useUpstream (the breaker's
// degraded fallback does just that) is told 1001 "route changed" as soon as it opens: the relay table
// (relayLimits, built once a version) lists the targets of the route's own upstream and of its traffic
// upstreams only, so the relay's target counts as gone. The client gets its 101 and then a close frame.
import assert from 'node:assert/strict';
import type net from 'node:net';
import { describe, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { deadAddress, gatewayConfig, sleep, startTestGateway, upstreamOf } from '../support.ts';
import { stopServer } from '../websocket-support.ts';

const PLUGIN = new URL('../fixtures/governance-filters.ts', import.meta.url);

describe('breaker2-review: a WebSocket moved by useUpstream', { timeout: 15_000 }, () => {
  test('is relayed, not closed at once', async (t) => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    t.after(() => stopServer(wss));
    wss.on('connection', (ws) => ws.on('message', (d) => ws.send(d)));
    const alt = `127.0.0.1:${(wss.address() as net.AddressInfo).port}`;
    const main = await deadAddress();
    const gw = await startTestGateway(
      gatewayConfig(
        {
          main: upstreamOf([main]),
          alt: upstreamOf([alt]),
        },
        [
          {
            name: 'ws',
            match: { path: '/ws' },
            upstream: 'main',
            websocket: { closeTimeout: 200 },
            filters: [{ name: 'switch-on-header' }],
          },
        ],
      ),
      { plugins: [PLUGIN] },
    );
    t.after(() => gw.stop());
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { 'x-switch': 'alt' } });
    t.after(() => ws.terminate());
    let closed: string | null = null;
    ws.on('close', (code, reason) => {
      closed = `${code} ${reason}`;
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const messages: string[] = [];
    ws.on('message', (d) => messages.push(String(d)));
    ws.send('ping');
    await sleep(300);
    assert.equal(closed, null, 'the WebSocket was closed');
    assert.deepEqual(messages, ['ping']);
  });
});
