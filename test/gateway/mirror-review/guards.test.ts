// Cases the review probed that hold on the current code, kept as guards: pipelined requests on one client
// connection, HEAD, Expect: 100-continue, a shadow answering before the body, an HTTP/2 shadow's bodies,
// and a reload while a mirror streams its body.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { test } from 'node:test';
import {
  echoHandler,
  gatewayConfig,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from '../support.ts';
import { h2Shadow, mirrored, recordingShadow } from './helpers.ts';

const settled = (gw: { gateway: { mirrorStats(): Record<string, { inFlight: number }> } }) =>
  waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'the mirrors settle');

test('pipelined POSTs, a GET and a HEAD on one client connection are each mirrored whole', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await recordingShadow();
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(mirrored(main.address, shadow.address));
  t.after(() => gw.stop());
  const b1 = randomBytes(30_000);
  const b2 = randomBytes(20_000);
  const s = net.connect(gw.port, '127.0.0.1');
  t.after(() => s.destroy());
  let got = '';
  s.on('data', (d: Buffer) => {
    got += d.toString('latin1');
  });
  await new Promise((r) => s.on('connect', r));
  s.write(
    Buffer.concat([
      Buffer.from(`POST /p1 HTTP/1.1\r\nhost: x\r\ncontent-length: ${b1.length}\r\n\r\n`),
      b1,
      Buffer.from(`POST /p2 HTTP/1.1\r\nhost: x\r\ncontent-length: ${b2.length}\r\n\r\n`),
      b2,
      Buffer.from('GET /p3 HTTP/1.1\r\nhost: x\r\n\r\nHEAD /p4 HTTP/1.1\r\nhost: x\r\n\r\n'),
    ]),
  );
  await waitUntil(() => (got.match(/HTTP\/1.1 200/g) ?? []).length === 4, 3000, 'four answers');
  await settled(gw);
  await sleep(50);
  assert.deepEqual(
    shadow.seen.map((x) => [x.method, x.url, x.bodyLength, x.complete]),
    [
      ['POST', '/p1', 30_000, true],
      ['POST', '/p2', 20_000, true],
      ['GET', '/p3', 0, true],
      ['HEAD', '/p4', 0, true],
    ],
  );
});

test('HEAD and GET mirrors alternate on one shadow connection', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await recordingShadow();
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(mirrored(main.address, shadow.address));
  t.after(() => gw.stop());
  for (const m of ['HEAD', 'GET', 'HEAD', 'POST', 'GET']) {
    assert.equal(
      (await send(gw.port, `/${m}`, { method: m, body: m === 'POST' ? 'abc' : undefined })).status,
      200,
    );
    await settled(gw);
  }
  assert.equal(shadow.connections, 1, 'a HEAD answer leaves the shadow connection reusable');
  assert.equal(gw.gateway.mirrorStats().app!.answered, 5);
});

test('Expect: 100-continue: the body reaches the shadow', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await recordingShadow();
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(mirrored(main.address, shadow.address));
  t.after(() => gw.stop());
  const s = net.connect(gw.port, '127.0.0.1');
  t.after(() => s.destroy());
  let got = '';
  s.on('data', (d: Buffer) => {
    got += d.toString('latin1');
  });
  await new Promise((r) => s.on('connect', r));
  s.write('POST /e HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\nexpect: 100-continue\r\n\r\n');
  await waitUntil(() => got.includes('100 Continue'), 2000, '100 Continue');
  s.write(randomBytes(5000));
  await waitUntil(() => got.includes('"name":"main"'), 2000, 'the answer');
  await settled(gw);
  assert.deepEqual(
    shadow.seen.map((x) => [x.url, x.bodyLength, x.complete]),
    [['/e', 5000, true]],
  );
});

test('a shadow answering before the body: later mirrors on that shadow are read right', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await recordingShadow((_req, res) => {
    res.writeHead(200, { 'content-length': '2' });
    res.end('ok');
    return true;
  });
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(mirrored(main.address, shadow.address));
  t.after(() => gw.stop());
  for (let i = 0; i < 3; i++) {
    const r = await send(gw.port, `/early${i}`, {
      method: 'POST',
      chunks: [randomBytes(100_000), randomBytes(300_000)],
    });
    assert.equal(r.status, 200);
    await settled(gw);
  }
  assert.equal((await send(gw.port, '/get')).status, 200);
  await settled(gw);
  await sleep(50);
  assert.deepEqual(
    shadow.seen.map((x) => x.url),
    ['/early0', '/early1', '/early2', '/get'],
  );
  const stats = gw.gateway.mirrorStats().app!;
  assert.equal(stats.answered, 4);
  assert.equal(stats.failed, 0);
});

test('an HTTP/2 shadow gets HEAD, sized and chunked bodies whole', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const got: [string, string, string, string][] = [];
  const shadow = await h2Shadow((stream, headers) => {
    const hash = createHash('sha256');
    stream.on('data', (d: Buffer) => hash.update(d));
    stream.on('end', () => {
      got.push([
        String(headers[':method']),
        String(headers[':path']),
        hash.digest('hex'),
        String(headers['x-netloom-mirror']),
      ]);
      stream.respond({ ':status': 200, 'content-length': '2' });
      stream.end(headers[':method'] === 'HEAD' ? undefined : 'ok');
    });
  });
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const gw = await startTestGateway(mirrored(main.address, shadow.address, {}, {}, { protocol: 'http2' }));
  t.after(() => gw.stop());
  const sized = randomBytes(200_000);
  const pieces = [randomBytes(70_000), randomBytes(5)];
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  await send(gw.port, '/h', { method: 'HEAD' });
  await send(gw.port, '/p', { method: 'POST', body: sized });
  await send(gw.port, '/c', { method: 'POST', chunks: pieces });
  await settled(gw);
  assert.deepEqual(got, [
    ['HEAD', '/h', sha(Buffer.alloc(0)), '1'],
    ['POST', '/p', sha(sized), '1'],
    ['POST', '/c', sha(Buffer.concat(pieces)), '1'],
  ]);
  assert.equal(gw.gateway.mirrorStats().app!.answered, 3);
});

test('a reload removing the mirror while one streams its body: it completes, the queued one is aborted, none leak', async (t) => {
  const main = await httpUpstream(echoHandler('main'));
  const shadow = await recordingShadow();
  t.after(() => Promise.all([main.close(), shadow.close()]));
  const config = mirrored(
    main.address,
    shadow.address,
    {},
    {},
    { pool: { maxConnections: 1, queueTimeout: 3000 } },
  );
  const gw = await startTestGateway(config);
  t.after(() => gw.stop());
  const slow = net.connect(gw.port, '127.0.0.1');
  const queued = net.connect(gw.port, '127.0.0.1');
  t.after(() => {
    slow.destroy();
    queued.destroy();
  });
  let answer = '';
  slow.on('data', (d: Buffer) => {
    answer += d.toString('latin1');
  });
  await Promise.all([new Promise((r) => slow.on('connect', r)), new Promise((r) => queued.on('connect', r))]);
  slow.write('POST /slow HTTP/1.1\r\nhost: x\r\ncontent-length: 20000\r\n\r\n');
  slow.write(randomBytes(10_000));
  await waitUntil(() => gw.gateway.mirrorStats().app?.started === 1, 2000, 'the first mirror');
  queued.write('POST /queued HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n');
  queued.write(randomBytes(100));
  await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 2, 2000, 'the second mirror waits');
  await gw.source.set(
    gatewayConfig({ main: upstreamOf([main.address]) }, [
      { name: 'app', match: { path: '/' }, upstream: 'main' },
    ]),
  );
  assert.ok((await gw.gateway.reload()).ok);
  slow.write(randomBytes(10_000));
  await waitUntil(() => answer.includes('"name":"main"'), 2000, 'the slow answer');
  await waitUntil(() => shadow.seen.some((s) => s.complete), 2000, 'the streaming mirror completes');
  assert.deepEqual(
    shadow.seen.map((x) => [x.url, x.bodyLength, x.complete]),
    [['/slow', 20_000, true]],
  );
  // The mirror back (same route name, same counters): nothing is left counted in flight.
  await gw.source.set(config);
  assert.ok((await gw.gateway.reload()).ok);
  await settled(gw);
  const stats = gw.gateway.mirrorStats().app!;
  assert.equal(stats.answered, 1);
  // Its shadow target left the configuration: given up on the gateway's side, not the shadow's failure.
  assert.equal(stats.aborted, 1, 'the queued mirror was aborted when its pool closed');
  assert.equal(stats.failed, 0);
});
