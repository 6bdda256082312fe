// Traffic mirroring (issue 15): a share of a route's requests copied to a shadow upstream whose answers
// are discarded. The client's answer never waits for the shadow or sees it fail; what a mirror holds is
// bounded (maxBody, maxInFlight); the shadow gets the request as the route's upstream does, body and
// trailers included, marked `x-netloom-mirror: 1`.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import { describe, test } from 'node:test';
import { ConfigError, validateConfig } from 'netloom/gateway';
import {
  deadAddress,
  type Echo,
  echoed,
  echoHandler,
  gatewayConfig,
  httpUpstream,
  rawUpstream,
  send,
  sendJson,
  sleep,
  startTestGateway,
  upstreamOf,
  waitUntil,
} from './support.ts';

/** A shadow recording what it received (as the echo upstream sees it); `answer` may delay or refuse. */
async function shadowUpstream(answer?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean) {
  const seen: Echo[] = [];
  /** Requests whose body broke off (the connection closed before the end). */
  let cut = 0;
  const up = await httpUpstream((req, res) => {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (d: Buffer) => {
      hash.update(d);
      length += d.length;
    });
    req.on('aborted', () => cut++);
    req.on('end', () => {
      const headers: [string, string][] = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        headers.push([req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!]);
      seen.push({
        name: 'shadow',
        method: req.method ?? '',
        url: req.url ?? '',
        headers,
        bodyLength: length,
        bodySha: hash.digest('hex'),
        trailers: { ...(req.trailers as Record<string, string>) },
      });
      if (answer?.(req, res) === false) return;
      res.writeHead(200, { 'content-length': '6' });
      res.end('shadow');
    });
  });
  return Object.assign(up, {
    seen,
    get cut() {
      return cut;
    },
  });
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function mirrored(
  main: string,
  shadow: string,
  mirror: Record<string, unknown> = {},
  route: Record<string, unknown> = {},
  upstreamExtra: Record<string, unknown> = {},
) {
  return gatewayConfig({ main: upstreamOf([main]), shadow: upstreamOf([shadow], upstreamExtra) }, [
    {
      name: 'app',
      match: { path: '/' },
      upstream: 'main',
      mirror: { upstream: 'shadow', ...mirror },
      ...route,
    },
  ]);
}

describe('traffic mirroring', () => {
  test('GET, a sized body and a chunked body with trailers reach the shadow as the upstream gets them', async (t) => {
    const main = await httpUpstream(echoHandler('main'));
    const shadow = await shadowUpstream();
    t.after(() => Promise.all([main.close(), shadow.close()]));
    const gw = await startTestGateway(
      mirrored(
        main.address,
        shadow.address,
        {},
        {
          match: { path: '/api' },
          rewrite: { stripPrefix: '/api' },
          requestHeaders: { add: { 'x-route': 'app' }, remove: ['x-secret'] },
        },
      ),
    );
    t.after(() => gw.stop());

    const get = await sendJson<Echo>(gw.port, '/api/items?page=2', {
      headers: { 'x-user': 'u1', 'x-secret': 's' },
    });
    assert.equal(get.status, 200);
    assert.equal(get.json.name, 'main');
    assert.equal(echoed(get.json, 'x-netloom-mirror'), undefined, 'the live request is not marked');

    const body = randomBytes(300_000);
    const post = await sendJson<Echo>(gw.port, '/api/upload', { method: 'POST', body });
    assert.equal(post.json.bodySha, sha(body));

    const pieces = [randomBytes(70_000), randomBytes(1), randomBytes(123_456)];
    const chunked = await new Promise<Echo>((resolve, reject) => {
      const s = net.connect(gw.port, '127.0.0.1');
      s.on('error', reject);
      let text = '';
      s.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        const at = text.indexOf('\r\n\r\n');
        const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? -1);
        if (at !== -1 && length >= 0 && text.length >= at + 4 + length) {
          resolve(JSON.parse(text.slice(at + 4, at + 4 + length)) as Echo);
          s.end();
        }
      });
      s.write(
        'POST /api/stream HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntrailer: x-digest\r\n\r\n',
      );
      for (const p of pieces) s.write(`${p.length.toString(16)}\r\n${p.toString('latin1')}\r\n`, 'latin1');
      s.write('0\r\nx-digest: abc\r\n\r\n');
    });
    assert.equal(chunked.bodySha, sha(Buffer.concat(pieces)));

    await waitUntil(() => shadow.seen.length === 3, 3000, 'three mirrors');
    const [g, p, c] = [...shadow.seen].sort((a, b) => a.url.localeCompare(b.url));
    assert.deepEqual(
      [c!.url, g!.url, p!.url].sort(),
      ['/items?page=2', '/stream', '/upload'].sort(),
      'the route rewrite and the query apply to the mirror',
    );
    const items = shadow.seen.find((e) => e.url === '/items?page=2')!;
    assert.equal(items.method, 'GET');
    assert.equal(echoed(items, 'x-netloom-mirror'), '1');
    assert.equal(echoed(items, 'x-user'), 'u1');
    assert.equal(echoed(items, 'x-route'), 'app', "the route's header policy applies");
    assert.equal(echoed(items, 'x-secret'), undefined, "the route's removals apply");
    assert.equal(echoed(items, 'host'), echoed(get.json, 'host'), 'the Host the upstream got (preserveHost)');
    assert.equal(echoed(items, 'x-request-id'), echoed(get.json, 'x-request-id'), 'the same request id');
    assert.ok(echoed(items, 'x-forwarded-for')?.includes('127.0.0.1'));
    const upload = shadow.seen.find((e) => e.url === '/upload')!;
    assert.equal(upload.method, 'POST');
    assert.equal(upload.bodySha, sha(body));
    assert.equal(echoed(upload, 'content-length'), String(body.length));
    const stream = shadow.seen.find((e) => e.url === '/stream')!;
    assert.equal(stream.bodySha, sha(Buffer.concat(pieces)));
    assert.equal(echoed(stream, 'transfer-encoding'), 'chunked');
    assert.equal(stream.trailers['x-digest'], 'abc', 'trailers reach the shadow');

    await waitUntil(() => gw.gateway.mirrorStats().app?.answered === 3, 2000, 'stats');
    assert.deepEqual(gw.gateway.mirrorStats().app, {
      started: 3,
      answered: 3,
      failed: 0,
      aborted: 0,
      skipped: 0,
      inFlight: 0,
    });
  });

  test('a shadow that hangs, is down or answers garbage changes nothing for the client', async (t) => {
    const main = await httpUpstream(echoHandler('main'));
    const hanging = await shadowUpstream(() => false); // never answers
    const garbage = await rawUpstream((_h, _b, s) => s.write('HTTP/1.1 99999 what\r\n\r\n'));
    const dead = await deadAddress();
    t.after(() => Promise.all([main.close(), hanging.close(), garbage.close()]));
    for (const [label, address] of [
      ['hanging', hanging.address],
      ['garbage', garbage.address],
      ['down', dead],
    ] as const) {
      const gw = await startTestGateway(
        mirrored(main.address, address, {}, {}, { timeouts: { total: 400, firstByte: 300 } }),
      );
      try {
        const started = performance.now();
        for (let i = 0; i < 20; i++) {
          const r = await send(gw.port, `/x${i}`, {
            method: i % 2 ? 'POST' : 'GET',
            body: i % 2 ? 'payload' : undefined,
          });
          assert.equal(r.status, 200, `${label}: request ${i}`);
          assert.equal((JSON.parse(r.text) as Echo).name, 'main');
        }
        const took = performance.now() - started;
        assert.ok(took < 2000, `${label}: 20 requests took ${took} ms (they must not wait for the shadow)`);
        await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, `${label}: mirrors settle`);
        const stats = gw.gateway.mirrorStats().app!;
        assert.equal(stats.started, 20, label);
        assert.equal(stats.failed, 20, `${label}: every mirror failed (${JSON.stringify(stats)})`);
        assert.equal(stats.answered, 0, label);
      } finally {
        await gw.stop();
      }
    }
  });

  test('percent mirrors that share of requests at random', async (t) => {
    const main = await httpUpstream(echoHandler('main'));
    const shadow = await shadowUpstream();
    t.after(() => Promise.all([main.close(), shadow.close()]));
    const gw = await startTestGateway(mirrored(main.address, shadow.address, { percent: 10 }));
    t.after(() => gw.stop());
    const agent = new (await import('node:http')).Agent({ keepAlive: true, maxSockets: 8 });
    t.after(() => agent.destroy());
    const n = 3000;
    for (let i = 0; i < n; i += 100)
      await Promise.all(Array.from({ length: 100 }, (_, k) => send(gw.port, `/r${i + k}`, { agent })));
    await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'mirrors settle');
    const share = shadow.seen.length / n;
    // Binomial(3000, 0.1): the standard deviation is 0.55%; 2.5% is over four of them.
    assert.ok(Math.abs(share - 0.1) < 0.025, `mirrored share ${share}`);
    assert.equal(gw.gateway.mirrorStats().app!.started, shadow.seen.length);
  });

  test('a body over maxBody is not mirrored; a chunked one growing past it stops its mirror', async (t) => {
    const main = await httpUpstream(echoHandler('main'));
    const shadow = await shadowUpstream();
    t.after(() => Promise.all([main.close(), shadow.close()]));
    const gw = await startTestGateway(mirrored(main.address, shadow.address, { maxBody: 1000 }));
    t.after(() => gw.stop());
    const big = randomBytes(1001);
    const sized = await sendJson<Echo>(gw.port, '/sized', { method: 'POST', body: big });
    assert.equal(sized.json.bodySha, sha(big));
    const pieces = [randomBytes(600), randomBytes(600), randomBytes(600)];
    const chunked = await sendJson<Echo>(gw.port, '/chunked', { method: 'PUT', chunks: pieces });
    assert.equal(chunked.json.bodySha, sha(Buffer.concat(pieces)), 'the live request keeps its whole body');
    const fits = await sendJson<Echo>(gw.port, '/fits', { method: 'POST', body: big.subarray(0, 1000) });
    assert.equal(fits.status, 200);
    await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'mirrors settle');
    await sleep(100);
    assert.deepEqual(
      shadow.seen.map((e) => e.url),
      ['/fits'],
      'only the body within maxBody reached the shadow whole',
    );
    const stats = gw.gateway.mirrorStats().app!;
    assert.equal(stats.skipped, 1, 'the sized body was skipped');
    assert.equal(stats.aborted, 1, 'the chunked body stopped its mirror');
    assert.equal(stats.answered, 1);
  });

  test('maxInFlight bounds mirrors of a slow shadow; they end at its timeout', async (t) => {
    const main = await httpUpstream(echoHandler('main'));
    const shadow = await shadowUpstream(() => false);
    t.after(() => Promise.all([main.close(), shadow.close()]));
    const gw = await startTestGateway(
      mirrored(
        main.address,
        shadow.address,
        { maxInFlight: 5 },
        {},
        { timeouts: { total: 600, firstByte: 500 } },
      ),
    );
    t.after(() => gw.stop());
    for (let i = 0; i < 20; i++) assert.equal((await send(gw.port, `/q${i}`)).status, 200);
    let stats = gw.gateway.mirrorStats().app!;
    assert.equal(stats.started, 5);
    assert.equal(stats.skipped, 15);
    assert.equal(stats.inFlight, 5);
    await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'timeouts');
    stats = gw.gateway.mirrorStats().app!;
    assert.equal(stats.failed, 5);
    // Room again: the next request is mirrored.
    assert.equal((await send(gw.port, '/after')).status, 200);
    assert.equal(gw.gateway.mirrorStats().app!.started, 6);
  });

  test('body chunks that come before the shadow connection is ready are copied, not lent', async (t) => {
    // The shadow's pool holds one connection and its first request keeps it 300 ms: the second mirror
    // waits in the pool's queue while its body streams through the gateway (whose read buffer is reused).
    const main = await httpUpstream(echoHandler('main'));
    let first = true;
    const shadow = await shadowUpstream((_req, res) => {
      if (!first) return true;
      first = false;
      setTimeout(() => {
        res.writeHead(200, { 'content-length': '1' });
        res.end('x');
      }, 300);
      return false;
    });
    t.after(() => Promise.all([main.close(), shadow.close()]));
    const gw = await startTestGateway(
      mirrored(main.address, shadow.address, {}, {}, { pool: { maxConnections: 1, queueTimeout: 2000 } }),
    );
    t.after(() => gw.stop());
    assert.equal((await send(gw.port, '/first')).status, 200);
    const pieces = Array.from({ length: 40 }, () => randomBytes(8000));
    const r = await sendJson<Echo>(gw.port, '/second', { method: 'POST', chunks: pieces });
    assert.equal(r.json.bodySha, sha(Buffer.concat(pieces)));
    // Another request right after, so the gateway's buffers are reused before the mirror is sent.
    await send(gw.port, '/third', { method: 'POST', body: randomBytes(64_000) });
    await waitUntil(() => shadow.seen.some((e) => e.url === '/second'), 3000, 'the queued mirror');
    const second = shadow.seen.find((e) => e.url === '/second')!;
    assert.equal(second.bodyLength, 320_000);
    assert.equal(second.bodySha, sha(Buffer.concat(pieces)));
  });

  test('a client that leaves mid-body stops the mirror: the shadow never sees a complete request', async (t) => {
    const main = await httpUpstream(echoHandler('main'));
    const shadow = await shadowUpstream();
    t.after(() => Promise.all([main.close(), shadow.close()]));
    const gw = await startTestGateway(mirrored(main.address, shadow.address));
    t.after(() => gw.stop());
    const s = net.connect(gw.port, '127.0.0.1');
    s.on('error', () => {});
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    s.write('POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n');
    s.write(randomBytes(20_000));
    await waitUntil(() => gw.gateway.mirrorStats().app?.started === 1, 2000, 'the mirror started');
    await sleep(100);
    s.destroy();
    await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'the mirror ends');
    await sleep(100);
    assert.equal(shadow.seen.length, 0, 'no complete request reached the shadow');
    assert.equal(gw.gateway.mirrorStats().app!.aborted, 1);
  });

  test('requests a filter answered, WebSocket upgrades and CONNECT are not mirrored', async (t) => {
    const main = await httpUpstream(echoHandler('main'));
    const shadow = await shadowUpstream();
    t.after(() => Promise.all([main.close(), shadow.close()]));
    const gw = await startTestGateway(
      mirrored(
        main.address,
        shadow.address,
        {},
        {
          match: { path: '/', methods: ['GET', 'CONNECT'] },
          filters: [{ name: 'fault', when: { header: 'x-fault' }, abort: { status: 418 } }],
        },
      ),
    );
    t.after(() => gw.stop());
    assert.equal((await send(gw.port, '/x', { headers: { 'x-fault': 'yes' } })).status, 418);
    assert.equal((await send(gw.port, '/y')).status, 200);
    await waitUntil(() => shadow.seen.length === 1, 2000, 'one mirror');
    await sleep(100);
    assert.deepEqual(
      shadow.seen.map((e) => e.url),
      ['/y'],
    );
  });

  test('a pooled shadow connection closed while idle: the mirror goes again on a fresh one', async (t) => {
    const main = await httpUpstream(echoHandler('main'));
    let seen = 0;
    // Answers the first request of a connection keep-alive and drops the connection on its second without
    // an answer: what a shadow whose idle timeout raced ours does.
    const served = new WeakSet<net.Socket>();
    const shadow = await rawUpstream((_h, _b, s) => {
      if (served.has(s)) {
        s.destroy();
        return;
      }
      served.add(s);
      seen++;
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
    t.after(() => Promise.all([main.close(), shadow.close()]));
    const gw = await startTestGateway(mirrored(main.address, shadow.address));
    t.after(() => gw.stop());
    for (let i = 0; i < 5; i++) {
      assert.equal((await send(gw.port, `/k${i}`)).status, 200);
      await sleep(60);
    }
    await waitUntil(() => gw.gateway.mirrorStats().app?.inFlight === 0, 3000, 'mirrors settle');
    assert.equal(seen, 5, 'every mirror reached the shadow');
    assert.equal(gw.gateway.mirrorStats().app!.answered, 5);
  });

  test('a reload adds, changes and removes a mirror; /stats shows it on the admin endpoint', async (t) => {
    const main = await httpUpstream(echoHandler('main'));
    const shadow = await shadowUpstream();
    t.after(() => Promise.all([main.close(), shadow.close()]));
    const token = 'mirror-admin-token-0123456789';
    const plain = gatewayConfig(
      { main: upstreamOf([main.address]), shadow: upstreamOf([shadow.address]) },
      [{ name: 'app', match: { path: '/' }, upstream: 'main' }],
      { admin: { address: '127.0.0.1:0', token } },
    );
    const gw = await startTestGateway(plain);
    t.after(() => gw.stop());
    await send(gw.port, '/a');
    const withMirror = structuredClone(plain) as { routes: Record<string, unknown>[] };
    withMirror.routes[0]!.mirror = { upstream: 'shadow' };
    await gw.source.set(withMirror);
    assert.ok((await gw.gateway.reload()).ok);
    await send(gw.port, '/b');
    await waitUntil(() => shadow.seen.length === 1, 2000, 'a mirror after the reload');
    const stats = await sendJson<{ mirrors: Record<string, { started: number }> }>(
      gw.gateway.admin!.port,
      '/stats',
      {
        headers: { authorization: `Bearer ${token}` },
      },
    );
    assert.equal(stats.json.mirrors.app?.started, 1);
    await gw.source.set(plain);
    assert.ok((await gw.gateway.reload()).ok);
    await send(gw.port, '/c');
    await sleep(150);
    assert.deepEqual(
      shadow.seen.map((e) => e.url),
      ['/b'],
    );
  });

  test('bad mirror settings are refused at their paths', () => {
    const base = (mirror: unknown) =>
      gatewayConfig({ main: upstreamOf(['127.0.0.1:1']) }, [
        { name: 'app', match: { path: '/' }, upstream: 'main', mirror },
      ]);
    const refused = (mirror: unknown, path: string) => {
      assert.throws(
        () => validateConfig(base(mirror)),
        (err: unknown) => err instanceof ConfigError && err.problems.some((p) => p.startsWith(`${path}:`)),
        `${JSON.stringify(mirror)} at ${path}`,
      );
    };
    refused({ upstream: 'nope' }, 'routes.0.mirror.upstream');
    refused({ upstream: 'main', percent: 101 }, 'routes.0.mirror.percent');
    refused({ upstream: 'main', percent: -1 }, 'routes.0.mirror.percent');
    refused({ upstream: 'main', maxBody: -5 }, 'routes.0.mirror.maxBody');
    refused({ upstream: 'main', maxInFlight: 0 }, 'routes.0.mirror.maxInFlight');
    refused({ upstream: 'main', sample: 1 }, 'routes.0.mirror');
    refused({}, 'routes.0.mirror.upstream');
    const ok = validateConfig(base({ upstream: 'main', percent: 0.5 }));
    assert.deepEqual(ok.routes[0]!.mirror, {
      upstream: 'main',
      percent: 0.5,
      maxBody: 1048576,
      maxInFlight: 256,
    });
  });
});
