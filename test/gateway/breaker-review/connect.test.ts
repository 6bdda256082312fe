// Review (breaker-review): a circuit-breaker on a CONNECT route. The call completes (onComplete runs) as
// soon as the tunnel is asked for, before the target is dialed: the record says answeredBy 'upstream',
// status 0, error null, so a refused target (the client gets 502) counts as a success and the circuit never
// opens; a half-open probe "passes" whatever the target does.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { deadAddress, gatewayConfig, startTestGateway, upstreamOf } from '../support.ts';

/** A CONNECT; resolves with the status of the answer (200 once the tunnel stands). */
function connect(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer: ${JSON.stringify(buf)}`));
    }, 3000);
    s.on('data', (d) => {
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

describe('breaker-review: CONNECT routes', { timeout: 15_000 }, () => {
  test('tunnels to a refused target count as failures and open the circuit', async (t) => {
    const dead = await deadAddress();
    const gw = await startTestGateway(
      gatewayConfig({ up: upstreamOf([dead], { retries: 0 }) }, [
        {
          name: 'tunnel',
          match: { path: '/', methods: ['CONNECT'] },
          upstream: 'up',
          filters: [{ name: 'circuit-breaker', minimumRequests: 3, openTime: 10_000 }],
        },
      ]),
    );
    t.after(() => gw.stop());
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push(await connect(gw.port));
    // Three refused dials (502 each, or 503 once the target is marked unhealthy): then the fallback.
    assert.deepEqual(
      statuses.slice(3),
      [503, 503],
      `the circuit opens after 3 failed tunnels; got ${statuses}`,
    );
  });
});
