// Review of the fault filter's delay: clients that leave, route timeouts, abort statuses without bodies.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { gatewayConfig, namedUpstream, send, sleep, startTestGateway, upstreamOf } from '../support.ts';

async function faultGateway(
  address: string,
  fault: Record<string, unknown>,
  upstreamExtra: Record<string, unknown> = {},
) {
  const config = gatewayConfig({ up: upstreamOf([address], upstreamExtra) }, [
    { name: 'api', match: { path: '/' }, upstream: 'up', filters: [{ name: 'fault', ...fault }] },
  ]);
  return startTestGateway(config);
}

/** Writes `raw` on a fresh connection, collects everything until `ms` passed or the socket closed. */
async function raw(port: number, data: string, ms: number): Promise<string> {
  const s = net.connect(port, '127.0.0.1');
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  s.on('error', () => {});
  s.write(data);
  await Promise.race([sleep(ms), new Promise((r) => s.on('close', r))]);
  s.destroy();
  return got;
}

describe('fault delay review', { timeout: 30_000 }, () => {
  test('a client that leaves while held: nothing reaches the upstream and the gateway goes on', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await faultGateway(up.address, { delay: { ms: 300 } });
    t.after(() => gw.stop());
    for (let i = 0; i < 20; i++) {
      const s = net.connect(gw.port, '127.0.0.1');
      s.on('error', () => {});
      s.write('GET / HTTP/1.1\r\nhost: t\r\n\r\n');
      await sleep(5);
      s.destroy();
    }
    await sleep(500);
    assert.equal(up.requests, 0);
    assert.equal((await send(gw.port, '/')).status, 200);
    assert.equal(up.requests, 1);
  });

  test('a delay longer than the total timeout: the upstream is not sent a request the client gets a 504 for', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await faultGateway(up.address, { delay: { ms: 400 } }, { timeouts: { total: 200 } });
    t.after(() => gw.stop());
    const r = await send(gw.port, '/');
    await sleep(100);
    // Either the delay does not count against the upstream's budget (200 from the upstream), or the
    // gateway sees the budget spent and answers 504 without sending anything up.
    if (r.status === 504) assert.equal(up.requests, 0, `504 "${r.text}" yet the upstream got the request`);
    else assert.equal(r.status, 200);
  });

  test('abort 204 and 304: no body and the connection stays usable', async () => {
    for (const status of [204, 304]) {
      const up = await namedUpstream('ok');
      const gw = await faultGateway(up.address, { abort: { status, body: 'should not go out' } });
      try {
        const got = await raw(
          gw.port,
          'GET / HTTP/1.1\r\nhost: t\r\n\r\nGET / HTTP/1.1\r\nhost: t\r\n\r\n',
          500,
        );
        const heads = got.split('\r\n\r\n');
        assert.ok(!got.includes('should not go out'), got);
        assert.ok(!/content-length: [1-9]/i.test(got), got);
        assert.ok(!/transfer-encoding/i.test(got), got);
        assert.equal(got.match(new RegExp(`HTTP/1.1 ${status}`, 'g'))?.length, 2, got);
        assert.ok(heads.length >= 2);
      } finally {
        await gw.stop();
        await up.close();
      }
    }
  });

  test('abort on HEAD: no body and the connection stays usable', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await faultGateway(up.address, { abort: { status: 503 } });
    t.after(() => gw.stop());
    const got = await raw(
      gw.port,
      'HEAD / HTTP/1.1\r\nhost: t\r\n\r\nHEAD / HTTP/1.1\r\nhost: t\r\n\r\n',
      500,
    );
    assert.equal(got.match(/HTTP\/1.1 503/g)?.length, 2, got);
    assert.ok(!got.includes('fault injected'), got);
  });

  test('delay then abort: the abort answers after the delay; a client that leaves gets nothing sent up', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await faultGateway(up.address, { delay: { ms: 200 }, abort: { status: 502 } });
    t.after(() => gw.stop());
    const at = Date.now();
    const r = await send(gw.port, '/');
    assert.equal(r.status, 502);
    assert.ok(Date.now() - at >= 190);
    const s = net.connect(gw.port, '127.0.0.1');
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\nhost: t\r\n\r\n');
    await sleep(20);
    s.destroy();
    await sleep(300);
    assert.equal(up.requests, 0);
    assert.equal((await send(gw.port, '/')).status, 502);
  });

  test('stop() with requests held by a 60 s delay ends within its deadline', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await faultGateway(up.address, { delay: { ms: 60_000 } });
    const sockets: net.Socket[] = [];
    for (let i = 0; i < 5; i++) {
      const s = net.connect(gw.port, '127.0.0.1');
      s.on('error', () => {});
      s.write('GET / HTTP/1.1\r\nhost: t\r\n\r\n');
      sockets.push(s);
    }
    t.after(() => {
      for (const s of sockets) s.destroy();
    });
    await sleep(100);
    const at = Date.now();
    await gw.stop(300);
    assert.ok(Date.now() - at < 3000, `stop took ${Date.now() - at} ms`);
    assert.equal(up.requests, 0);
  });
});
