// Review (gov-review): CONNECT routes skip the route's pipeline: a rate-limit filter on them never runs.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { gatewayConfig, startTestGateway, upstreamOf } from '../support.ts';

async function tcpNamed(name: string) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.write(name);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A CONNECT; resolves with the status line and the first tunnel bytes (or the body of a refusal). */
function connect(port: number, extra = ''): Promise<{ status: number; after: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer: ${JSON.stringify(buf)}`));
    }, 3000);
    s.on('data', (d) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const status = Number(buf.slice(9, 12));
      const after = buf.slice(end + 4);
      if (status !== 200 || after.length > 0) {
        clearTimeout(timer);
        s.destroy();
        resolve({ status, after });
      }
    });
    s.on('error', reject);
    s.write(`CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n${extra}\r\n`);
  });
}

describe('gov-review: CONNECT routes', { timeout: 20_000 }, () => {
  test('a rate-limit filter on a CONNECT route refuses the tunnels above its limit', async (t) => {
    const stable = await tcpNamed('stable');
    t.after(() => stable.close());
    const gw = await startTestGateway(
      gatewayConfig({ stable: upstreamOf([stable.address]) }, [
        {
          name: 'tunnel',
          match: { path: '/', methods: ['CONNECT'] },
          upstream: 'stable',
          filters: [
            {
              name: 'rate-limit',
              limits: [{ algorithm: 'sliding-window', name: 'tunnels', limit: 1, window: 60_000 }],
            },
          ],
        },
      ]),
    );
    t.after(() => gw.stop());
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await connect(gw.port)).status);
    assert.deepEqual(statuses, [200, 429, 429]);
  });

  test('traffic on a CONNECT route: the config is refused, or the rule is honoured', async (t) => {
    const stable = await tcpNamed('stable');
    const canary = await tcpNamed('canary');
    t.after(() => stable.close());
    t.after(() => canary.close());
    let gw: Awaited<ReturnType<typeof startTestGateway>>;
    try {
      gw = await startTestGateway(
        gatewayConfig({ stable: upstreamOf([stable.address]), canary: upstreamOf([canary.address]) }, [
          {
            name: 'tunnel',
            match: { path: '/', methods: ['CONNECT'] },
            upstream: 'stable',
            traffic: { rules: [{ headers: { 'x-canary': 'on' }, upstream: 'canary' }] },
          },
        ]),
      );
    } catch (err) {
      assert.match(String((err as Error).message), /traffic/);
      return;
    }
    t.after(() => gw.stop());
    const r = await connect(gw.port, 'x-canary: on\r\n');
    assert.equal(r.status, 200);
    assert.equal(r.after, 'canary', 'a matching rule sends the tunnel to the canary');
  });
});
