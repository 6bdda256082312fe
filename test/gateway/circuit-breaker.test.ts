// The circuit-breaker stock filter (issue 15): an upstream that starts failing opens the circuit within the
// window, the fallback answers without reaching it, half-open probes close the circuit once it recovers (or
// open it again while it still fails); slow answers can open it too; clients leaving count as nothing.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, upstreamOf } from './support.ts';

/** An upstream whose answers the test switches: healthy (200), failing (500), or slow. */
async function switchable() {
  const mode = { status: 200, delay: 0 };
  const up = await httpUpstream((_req, res) => {
    setTimeout(() => res.writeHead(mode.status).end(`status ${mode.status}`), mode.delay);
  });
  return Object.assign(up, { mode });
}

async function gatewayWithBreaker(address: string, breaker: Record<string, unknown>) {
  return startTestGateway(
    gatewayConfig({ up: upstreamOf([address], { retries: 0 }) }, [
      {
        name: 'api',
        match: { path: '/' },
        upstream: 'up',
        filters: [{ name: 'circuit-breaker', ...breaker }],
      },
    ]),
  );
}

describe('circuit-breaker filter', () => {
  test('failures open it, the fallback answers without the upstream, probes close it when the upstream recovers', async (t) => {
    const up = await switchable();
    t.after(() => up.close());
    const gw = await gatewayWithBreaker(up.address, {
      window: 2000,
      minimumRequests: 10,
      failureRate: 50,
      openTime: 300,
      halfOpenRequests: 2,
    });
    t.after(() => gw.stop());
    for (let i = 0; i < 10; i++) assert.equal((await send(gw.port, '/')).status, 200);
    up.mode.status = 500;
    // 10 good, then bad ones: open once failures reach half of what the window holds (the 10th failure).
    const statuses: number[] = [];
    for (let i = 0; i < 14; i++) statuses.push((await send(gw.port, '/')).status);
    assert.deepEqual(statuses, [...new Array(10).fill(500), 503, 503, 503, 503]);
    const seen = up.requests;
    const open = await send(gw.port, '/');
    assert.equal(open.status, 503);
    assert.deepEqual(JSON.parse(open.text), { error: 'circuit open', status: 503, route: 'api' });
    assert.equal(open.headers['retry-after'], '1');
    assert.equal(up.requests, seen, 'the open circuit keeps requests off the upstream');
    // Still failing when the probe goes: open again.
    await sleep(350);
    assert.equal((await send(gw.port, '/')).status, 500); // the probe reached the upstream
    assert.equal((await send(gw.port, '/')).status, 503);
    // Recovered: two probes succeed, the circuit closes, traffic flows.
    up.mode.status = 200;
    await sleep(350);
    assert.equal((await send(gw.port, '/')).status, 200);
    assert.equal((await send(gw.port, '/')).status, 200);
    for (let i = 0; i < 5; i++) assert.equal((await send(gw.port, '/')).status, 200);
  });

  test('half-open lets only halfOpenRequests probes through at once; the others get the fallback', async (t) => {
    const up = await switchable();
    t.after(() => up.close());
    const gw = await gatewayWithBreaker(up.address, {
      minimumRequests: 2,
      openTime: 200,
      halfOpenRequests: 1,
    });
    t.after(() => gw.stop());
    up.mode.status = 503;
    for (let i = 0; i < 2; i++) assert.equal((await send(gw.port, '/')).status, 503);
    assert.equal((await send(gw.port, '/')).headers['content-type'], 'application/json');
    await sleep(250);
    up.mode.status = 200;
    up.mode.delay = 200; // the probe takes a while: others arrive meanwhile
    const probe = send(gw.port, '/');
    await sleep(50);
    const others = await Promise.all([send(gw.port, '/'), send(gw.port, '/')]);
    assert.deepEqual(
      others.map((r) => r.status),
      [503, 503],
    );
    assert.equal((await probe).status, 200);
    up.mode.delay = 0;
    assert.equal((await send(gw.port, '/')).status, 200); // closed after its one probe succeeded
  });

  test('slow answers open it (slowCalls), and a custom fallback answers', async (t) => {
    const up = await switchable();
    t.after(() => up.close());
    const gw = await gatewayWithBreaker(up.address, {
      minimumRequests: 4,
      slowCalls: { threshold: 100, rate: 50 },
      openTime: 10_000,
      fallback: { status: 200, body: 'degraded: try later', contentType: 'text/plain' },
    });
    t.after(() => gw.stop());
    up.mode.delay = 150;
    for (let i = 0; i < 4; i++) assert.equal((await send(gw.port, '/')).status, 200);
    const degraded = await send(gw.port, '/');
    assert.equal(degraded.text, 'degraded: try later');
    assert.equal(degraded.headers['content-type'], 'text/plain');
    assert.equal(degraded.headers['retry-after'], '10');
  });

  test('connection failures count; clients that leave do not', async (t) => {
    const up = await switchable();
    const address = up.address;
    await up.close(); // nothing listens: every request is a connect failure (502)
    const gw = await gatewayWithBreaker(address, { minimumRequests: 3, openTime: 10_000 });
    t.after(() => gw.stop());
    for (let i = 0; i < 3; i++) assert.equal((await send(gw.port, '/')).status, 502);
    assert.equal((await send(gw.port, '/')).status, 503);

    const slow = await switchable();
    t.after(() => slow.close());
    slow.mode.delay = 5000;
    const gw2 = await gatewayWithBreaker(slow.address, { minimumRequests: 2, openTime: 10_000 });
    t.after(() => gw2.stop());
    // Three clients give up before the answer: none of that is the upstream's failure.
    for (let i = 0; i < 3; i++) {
      const socket = net.connect(gw2.port, '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.write('GET / HTTP/1.1\r\nhost: t\r\n\r\n');
      await sleep(50);
      socket.destroy();
    }
    await sleep(50);
    slow.mode.delay = 0;
    assert.equal((await send(gw2.port, '/')).status, 200);
  });
});
