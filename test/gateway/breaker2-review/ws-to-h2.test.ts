// Review (breaker2-review): the dispatcher refuses a WebSocket upgrade toward an HTTP/2 upstream with a 501
// before the filters run; a filter's useUpstream to an HTTP/2 upstream comes after that check and is taken
// without one, so the upgrade goes up the HTTP/2 pool as a plain GET and the client, which asked for a
// WebSocket, gets the upstream's 200.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { describe, test } from 'node:test';
import { gatewayConfig, rawUpstream, startTestGateway, upstreamOf } from '../support.ts';

const PLUGIN = new URL('../fixtures/governance-filters.ts', import.meta.url);

/** Sends a WebSocket opening handshake; resolves with the status line's code (0: closed without one). */
function upgrade(port: number, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer in 3 s: ${JSON.stringify(buf)}`));
    }, 3000);
    s.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.indexOf('\r\n') === -1) return;
      clearTimeout(timer);
      s.destroy();
      resolve(Number(buf.slice(9, 12)));
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(0);
    });
    s.on('error', () => {});
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    s.write(
      'GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n' +
        `sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`,
    );
  });
}

describe('breaker2-review: useUpstream to an HTTP/2 upstream on an upgrade', { timeout: 15_000 }, () => {
  test('the upgrade is refused plainly (501), as when the route itself is HTTP/2', async (t) => {
    const h2 = http2.createServer();
    h2.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('h2');
    });
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    t.after(() => new Promise<void>((r) => h2.close(() => r())));
    const h1 = await rawUpstream(() => {});
    t.after(() => h1.close());
    const gw = await startTestGateway(
      gatewayConfig(
        {
          h1: upstreamOf([h1.address]),
          h2: upstreamOf([`127.0.0.1:${(h2.address() as net.AddressInfo).port}`], { protocol: 'http2' }),
        },
        [{ name: 'ws', match: { path: '/ws' }, upstream: 'h1', filters: [{ name: 'switch-on-header' }] }],
      ),
      { plugins: [PLUGIN] },
    );
    t.after(() => gw.stop());
    assert.equal(await upgrade(gw.port, { 'x-switch': 'h2' }), 501);
  });
});
