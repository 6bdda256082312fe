// Fix review (bd9804c): `ProxyCall.connect` now answers 501 "CONNECT over HTTP/2 is not supported" to any
// CONNECT whose upstream is `protocol: http2`, "checked before the filters for the route's upstream; again
// here for one a filter chose". But the check before the filters (dispatcher) is about the *client's*
// HTTP version (a tunnel over an HTTP/2 stream), not the upstream's protocol: a CONNECT is a raw TCP
// tunnel to a target, whatever HTTP the gateway would speak to it. An HTTP/1.1 CONNECT on a route whose
// upstream is http2 opened its tunnel before the fix; now it is refused 501, with a message about a
// protocol the client is not using.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { gatewayConfig, startTestGateway, upstreamOf } from '../support.ts';

/** A CONNECT over HTTP/1.1; resolves with the status line's code once the head arrives. */
function connect(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer: ${JSON.stringify(buf)}`));
    }, 3000);
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.indexOf('\r\n\r\n') === -1) return;
      clearTimeout(timer);
      s.destroy();
      resolve(Number(buf.slice(9, 12)));
    });
    s.on('error', reject);
    s.write('CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n');
  });
}

describe('fix-review: CONNECT to a protocol: http2 upstream', { timeout: 15_000 }, () => {
  test('an HTTP/1.1 CONNECT still opens its TCP tunnel (200), as before the fix', async (t) => {
    const sockets = new Set<net.Socket>();
    const target = net.createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
      s.pipe(s);
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => target.close(() => resolve()));
    });
    const address = `127.0.0.1:${(target.address() as net.AddressInfo).port}`;
    const gw = await startTestGateway(
      gatewayConfig({ h2: upstreamOf([address], { protocol: 'http2' }) }, [
        { name: 'tunnel', match: { path: '/', methods: ['CONNECT'] }, upstream: 'h2' },
      ]),
    );
    t.after(() => gw.stop());
    assert.equal(await connect(gw.port), 200, 'the tunnel opens (a CONNECT is TCP, not HTTP/2)');
  });
});
