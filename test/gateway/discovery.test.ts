// Service discovery (issue 17): an upstream's targets from etcd registrations with leases, and from DNS SRV
// records (a small DNS server here answers them), reaching every loop without a reload; the targets that
// stay keep their pools; a target whose lease expires is drained while a load runs, with no failed request.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { ConfigError, validateConfig } from 'netloom/gateway';
import { type EtcdServer, startEtcd } from './etcd-support.ts';
import { gatewayConfig, httpUpstream, send, sleep, startTestGateway, waitUntil } from './support.ts';

/** An upstream answering its name, counting connections (pools kept means no new ones). */
const named = (name: string) =>
  httpUpstream((_req, res) => {
    res.writeHead(200, { 'content-length': String(name.length) });
    res.end(name);
  });

/** Registers `address` under `key` with a lease of `ttl` s kept alive until `stop` (then it expires). */
async function register(etcd: EtcdServer, key: string, address: string, ttl = 2) {
  const lease = await etcd.client.grantLease(ttl);
  await etcd.client.put(key, JSON.stringify({ address, weight: 1 }), lease);
  const timer = setInterval(() => void etcd.client.keepAlive(lease).catch(() => {}), 500);
  return {
    lease,
    /** Stops renewing: the key goes when the lease expires. */
    stop: () => clearInterval(timer),
  };
}

describe('service discovery', () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await startEtcd();
  });
  after(() => etcd.stop());

  test('etcd registrations reach both loops; a lease that expires under load drains its target, no request fails', async (t) => {
    const a = await named('A');
    const b = await named('B');
    t.after(() => Promise.all([a.close(), b.close()]));
    const prefix = '/services/video/';
    const ra = await register(etcd, `${prefix}a`, a.address);
    t.after(() => ra.stop());
    const gw = await startTestGateway(
      gatewayConfig(
        { video: { discovery: { etcd: { endpoints: [etcd.endpoint], prefix } } } },
        [{ name: 'v', match: { path: '/' }, upstream: 'video' }],
        { listeners: [{ address: '127.0.0.1:0', loops: 2 }] },
      ),
    );
    t.after(() => gw.stop());
    await waitUntil(async () => (await send(gw.port, '/')).text === 'A', 5000, 'A discovered');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    t.after(() => agent.destroy());
    for (let i = 0; i < 40; i++) assert.equal((await send(gw.port, '/', { agent })).text, 'A');
    const aConnections = a.connections;
    const rb = await register(etcd, `${prefix}b`, b.address);
    await waitUntil(
      async () => {
        for (let i = 0; i < 4; i++) if ((await send(gw.port, '/', { agent })).text === 'B') return true;
        return false;
      },
      5000,
      'B discovered',
    );
    // One at a time (no more concurrency than before): A's pools were kept, nothing is dialed again.
    for (let i = 0; i < 40; i++) await send(gw.port, '/', { agent });
    assert.equal(a.connections, aConnections, "A's keep-alive connections survive the change");
    // A load across the lease's expiry: every request answered.
    const statuses = new Map<string, number>();
    let running = true;
    const load = (async () => {
      while (running) {
        const replies = await Promise.all(
          Array.from({ length: 8 }, () =>
            send(gw.port, '/', { agent }).catch(() => ({ status: 0, text: 'error' })),
          ),
        );
        for (const r of replies)
          statuses.set(`${r.status} ${r.text}`, (statuses.get(`${r.status} ${r.text}`) ?? 0) + 1);
      }
    })();
    await sleep(300);
    rb.stop();
    await waitUntil(
      async () => (await etcd.client.range(`${prefix}b`)).kvs.length === 0,
      8000,
      'the lease expired',
    );
    await sleep(800);
    running = false;
    await load;
    const failed = [...statuses].filter(([k]) => !k.startsWith('200'));
    assert.deepEqual(failed, [], `every request answered: ${JSON.stringify([...statuses])}`);
    // B is out: no request reaches it any more.
    const bBefore = b.requests;
    for (let i = 0; i < 40; i++) assert.equal((await send(gw.port, '/', { agent })).text, 'A');
    assert.equal(b.requests, bBefore);
    // A registration that is not host:port is skipped (and said so); the rest stay.
    await etcd.client.put(`${prefix}junk`, 'not an address');
    await sleep(300);
    assert.equal((await send(gw.port, '/')).text, 'A');
  });

  test('DNS SRV records: targets follow the answers, re-resolved at their TTL', async (t) => {
    const a = await named('A');
    const b = await named('B');
    t.after(() => Promise.all([a.close(), b.close()]));
    const dns = await srvServer([a.port]);
    t.after(() => dns.close());
    const gw = await startTestGateway(
      gatewayConfig(
        {
          video: {
            discovery: {
              dns: { name: 'video.test', type: 'SRV', server: `127.0.0.1:${dns.port}`, minInterval: 200 },
            },
          },
        },
        [{ name: 'v', match: { path: '/' }, upstream: 'video' }],
      ),
    );
    t.after(() => gw.stop());
    await waitUntil(async () => (await send(gw.port, '/')).text === 'A', 5000, 'A from SRV');
    dns.answer([b.port]);
    await waitUntil(async () => (await send(gw.port, '/')).text === 'B', 5000, 'B from SRV');
    // The resolver fails (no answer): the last targets stay.
    dns.answer(null);
    await sleep(600);
    assert.equal((await send(gw.port, '/')).text, 'B');
  });

  test('a restart-only change pending: the notice comes with the reload, not again with each discovery rollout', async (t) => {
    const a = await named('A');
    const b = await named('B');
    t.after(() => Promise.all([a.close(), b.close()]));
    const dns = await srvServer([a.port]);
    t.after(() => dns.close());
    const config = (admin: boolean) =>
      gatewayConfig(
        {
          video: {
            discovery: {
              dns: { name: 'video.test', type: 'SRV', server: `127.0.0.1:${dns.port}`, minInterval: 200 },
            },
          },
        },
        [{ name: 'v', match: { path: '/' }, upstream: 'video' }],
        admin ? { admin: { address: '127.0.0.1:0', token: 'restart-only-notice-token-0123456789' } } : {},
      );
    const gw = await startTestGateway(config(false));
    t.after(() => gw.stop());
    await waitUntil(async () => (await send(gw.port, '/')).text === 'A', 5000, 'A from SRV');
    const notices: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
      const text = String(chunk);
      if (text.includes('applies at the next start')) notices.push(text);
      return write(chunk, ...rest);
    }) as typeof process.stderr.write;
    t.after(() => {
      process.stderr.write = write;
    });
    // admin is restart-only: the reload says so once and applies the rest.
    await gw.source.set(config(true));
    const r = await gw.gateway.reload();
    assert.ok(r.ok && r.restartRequired.includes('admin'), JSON.stringify(r));
    assert.equal(notices.length, 1, notices.join(''));
    // Discovery answers change twice: two rollouts, no new notice.
    dns.answer([b.port]);
    await waitUntil(async () => (await send(gw.port, '/')).text === 'B', 5000, 'B from SRV');
    dns.answer([a.port]);
    await waitUntil(async () => (await send(gw.port, '/')).text === 'A', 5000, 'A again');
    assert.equal(notices.length, 1, `the notice repeated: ${notices.join('')}`);
  });

  test('discovery settings are checked; an upstream needs targets or discovery', () => {
    const problems = (upstream: unknown) => {
      try {
        validateConfig(
          gatewayConfig({ u: upstream as Record<string, unknown> }, [
            { name: 'r', match: { path: '/' }, upstream: 'u' },
          ]),
        );
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.problems.join('\n');
      }
      assert.fail('accepted');
    };
    assert.match(problems({}), /upstreams\.u\.targets: an upstream needs targets, or discovery/);
    assert.match(
      problems({ discovery: { dns: { name: 'x', type: 'A' } } }),
      /A and AAAA records need a port/,
    );
    assert.match(
      problems({ discovery: { etcd: { endpoints: ['localhost'], prefix: '/s/' } } }),
      /http\(s\):\/\/host:port/,
    );
    assert.match(
      problems({ discovery: { etcd: { endpoints: ['http://127.0.0.1:2379'], prefix: '/services/video' } } }),
      /upstreams\.u\.discovery\.etcd\.prefix: ends in "\/"/,
    );
    assert.match(problems({ discovery: { consul: {} } }), /upstreams\.u\.discovery/);
    const ok = validateConfig(
      gatewayConfig({ u: { discovery: { dns: { name: 'x', port: 80 } } } }, [
        { name: 'r', match: { path: '/' }, upstream: 'u' },
      ]),
    );
    assert.deepEqual(ok.upstreams.u!.targets, []);
  });
});

/** A DNS server answering SRV queries with `127.0.0.1:<port>` targets (TTL 1), or not at all (null). */
async function srvServer(ports: number[]) {
  let answer: number[] | null = ports;
  const socket = dgram.createSocket('udp4');
  socket.on('message', (msg, rinfo) => {
    if (answer === null) return;
    const id = msg.readUInt16BE(0);
    // The question: labels up to a zero byte, then type and class.
    let p = 12;
    while (msg[p] !== 0) p += msg[p]! + 1;
    const question = msg.subarray(12, p + 5);
    const target = Buffer.concat([
      ...'127.0.0.1'.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
      Buffer.from([0]),
    ]);
    const records = answer.map((port) => {
      const rdata = Buffer.alloc(6);
      rdata.writeUInt16BE(0, 0); // priority
      rdata.writeUInt16BE(1, 2); // weight
      rdata.writeUInt16BE(port, 4);
      const head = Buffer.alloc(12);
      head.writeUInt16BE(0xc00c, 0); // the question's name
      head.writeUInt16BE(33, 2); // SRV
      head.writeUInt16BE(1, 4); // IN
      head.writeUInt32BE(1, 6); // TTL 1 s
      head.writeUInt16BE(6 + target.length, 10);
      return Buffer.concat([head, rdata, target]);
    });
    const header = Buffer.alloc(12);
    header.writeUInt16BE(id, 0);
    header.writeUInt16BE(0x8180, 2); // a response, recursion available, no error
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(records.length, 6);
    socket.send(Buffer.concat([header, question, ...records]), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  return {
    port: socket.address().port,
    answer(next: number[] | null) {
      answer = next;
    },
    close: () => new Promise<void>((r) => socket.close(() => r())),
  };
}
