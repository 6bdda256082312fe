// HTTP/2 upstreams (`protocol: http2`): streams multiplexed on pooled connections, h2c by prior knowledge and
// h2 by ALPN over TLS, bodies both ways, response trailers passed back, an upstream GOAWAY retried on a new
// connection, and gRPC end to end (@grpc/grpc-js client -> gateway -> @grpc/grpc-js server).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { TestPki } from '../tls/certs.ts';
import { gatewayConfig, startTestGateway } from './support.ts';

interface H2Upstream {
  port: number;
  sessions: number;
  streams: number;
  close(): Promise<void>;
}

async function h2Upstream(
  onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, up: H2Upstream) => void,
  tls?: { key: string; cert: string },
): Promise<H2Upstream> {
  const server =
    tls === undefined ? http2.createServer() : http2.createSecureServer({ ...tls, allowHTTP1: false });
  const sockets = new Set<net.Socket>();
  const up: H2Upstream = {
    port: 0,
    sessions: 0,
    streams: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('session', () => up.sessions++);
  server.on('stream', (stream, headers) => {
    up.streams++;
    onStream(stream, headers, up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.port = (server.address() as net.AddressInfo).port;
  return up;
}

/** An upstream echoing the request as JSON (method, path, a body digest), with a trailer. */
function echo(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
  const hash = createHash('sha256');
  let length = 0;
  stream.on('data', (d: Buffer) => {
    hash.update(d);
    length += d.length;
  });
  stream.on('end', () => {
    stream.respond({ ':status': 200, 'content-type': 'application/json' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'x-digest': hash.digest('hex').slice(0, 16) }));
    stream.end(
      JSON.stringify({
        method: headers[':method'],
        path: headers[':path'],
        authority: headers[':authority'],
        length,
        forwarded: headers['x-forwarded-for'],
        connection: headers.connection ?? null,
      }),
    );
  });
}

function h2get(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer) {
  return new Promise<{ status: number; body: string; trailers: http2.IncomingHttpHeaders }>(
    (resolve, reject) => {
      const req = session.request(headers);
      let status = 0;
      let data = '';
      let trailers: http2.IncomingHttpHeaders = {};
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('trailers', (t) => (trailers = t));
      req.on('data', (d: Buffer) => (data += d.toString()));
      req.on('end', () => resolve({ status, body: data, trailers }));
      req.on('error', reject);
      req.end(body);
    },
  );
}

test('h2c upstream: requests multiplexed on one connection, bodies and trailers pass both ways', async (t) => {
  const up = await h2Upstream(echo);
  const gw = await startTestGateway(
    gatewayConfig(
      {
        h2: {
          targets: [{ address: `127.0.0.1:${up.port}` }],
          protocol: 'http2',
          pool: { maxConnections: 1 },
        },
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'h2' }],
    ),
  );
  const client = http2.connect(gw.url);
  t.after(async () => {
    client.close();
    await gw.stop();
    await up.close();
  });
  const body = Buffer.alloc(300_000, 0x5a);
  const post = await h2get(client, { ':method': 'POST', ':path': '/up?x=1' }, body);
  assert.equal(post.status, 200);
  const echoed = JSON.parse(post.body) as { method: string; path: string; length: number; forwarded: string };
  assert.equal(echoed.method, 'POST');
  assert.equal(echoed.path, '/up?x=1');
  assert.equal(echoed.length, body.length);
  assert.equal(echoed.forwarded, '127.0.0.1');
  assert.equal(post.trailers['x-digest'], createHash('sha256').update(body).digest('hex').slice(0, 16));
  const all = await Promise.all(Array.from({ length: 30 }, (_, i) => h2get(client, { ':path': `/m/${i}` })));
  for (const [i, r] of all.entries()) assert.equal((JSON.parse(r.body) as { path: string }).path, `/m/${i}`);
  assert.equal(up.sessions, 1, 'every stream on one upstream connection');
  // An HTTP/1.1 client through the same route gets the trailers after a chunked body.
  const h1 = await fetch(`${gw.url}/from/h1`);
  assert.equal(((await h1.json()) as { path: string }).path, '/from/h1');
});

test('an upstream GOAWAY before a stream: the request goes again on a new connection', async (t) => {
  // node:http2 never sends a GOAWAY below the streams it received, so the first connection is answered by
  // hand: SETTINGS, then GOAWAY with last stream 0 once the request's HEADERS are in. Later connections
  // are piped to a real node:http2 upstream.
  const up = await h2Upstream(echo);
  let connections = 0;
  const front = net.createServer((s) => {
    if (connections++ > 0) {
      const real = net.connect(up.port, '127.0.0.1');
      s.pipe(real).pipe(s);
      s.on('error', () => real.destroy());
      real.on('error', () => s.destroy());
      return;
    }
    s.on('error', () => {});
    let seen = Buffer.alloc(0);
    s.write(Buffer.from('000000040000000000', 'hex')); // SETTINGS, empty
    s.on('data', (d: Buffer) => {
      seen = Buffer.concat([seen, d]);
      for (let p = 24; p + 9 <= seen.length; ) {
        const len = seen.readUIntBE(p, 3);
        if (seen[p + 3] === 0x1) {
          s.end(Buffer.from('0000080700000000000000000000000000', 'hex')); // GOAWAY last 0, NO_ERROR
          return;
        }
        p += 9 + len;
      }
    });
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  const frontPort = (front.address() as net.AddressInfo).port;
  const gw = await startTestGateway(
    gatewayConfig(
      { h2: { targets: [{ address: `127.0.0.1:${frontPort}` }], protocol: 'http2', retries: 0 } },
      [{ name: 'all', match: { path: '/' }, upstream: 'h2' }],
    ),
  );
  t.after(async () => {
    await gw.stop();
    await new Promise<void>((r) => front.close(() => r()));
    await up.close();
  });
  const r = await fetch(`${gw.url}/retried`);
  assert.equal(r.status, 200);
  assert.equal(((await r.json()) as { path: string }).path, '/retried');
  assert.equal(connections, 2, 'a second connection carried the request');
});

test('h2 over TLS to an upstream by ALPN', async (t) => {
  const pki = new TestPki();
  const cert = pki.issue('up', ['up.test']);
  const up = await h2Upstream(echo, { key: cert.key, cert: cert.cert });
  const gw = await startTestGateway(
    gatewayConfig(
      {
        h2: {
          targets: [{ address: `https://127.0.0.1:${up.port}` }],
          protocol: 'http2',
          tls: { caFile: pki.ca.certFile, servername: 'up.test' },
        },
      },
      [{ name: 'all', match: { path: '/' }, upstream: 'h2' }],
    ),
  );
  t.after(async () => {
    await gw.stop();
    await up.close();
    pki.cleanup();
  });
  const r = await fetch(`${gw.url}/secure`);
  assert.equal(r.status, 200);
  assert.equal(((await r.json()) as { path: string }).path, '/secure');
});

// gRPC with Buffer messages (no protobuf schema needed: the bytes are the message).
const passthrough = {
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
};
const service: grpc.ServiceDefinition = {
  unary: { path: '/test.Echo/Unary', requestStream: false, responseStream: false, ...passthrough },
  fail: { path: '/test.Echo/Fail', requestStream: false, responseStream: false, ...passthrough },
  stream: { path: '/test.Echo/Stream', requestStream: false, responseStream: true, ...passthrough },
  collect: { path: '/test.Echo/Collect', requestStream: true, responseStream: false, ...passthrough },
};

test('gRPC through the gateway: unary, a status error, server and client streaming', async (t) => {
  const server = new grpc.Server();
  server.addService(service, {
    unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      cb(null, Buffer.concat([Buffer.from('echo:'), call.request])),
    fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' }),
    stream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 0; i < 5; i++) call.write(Buffer.from(`part ${i}`));
      call.end();
    },
    collect: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      let n = 0;
      call.on('data', (d: Buffer) => (n += d.length));
      call.on('end', () => cb(null, Buffer.from(String(n))));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const gw = await startTestGateway(
    gatewayConfig({ grpc: { targets: [{ address: `127.0.0.1:${port}` }], protocol: 'http2' } }, [
      { name: 'grpc', match: { path: '/test.Echo/' }, upstream: 'grpc' },
    ]),
  );
  const Client = grpc.makeGenericClientConstructor(service, 'Echo');
  type Call = (...args: unknown[]) => unknown;
  const client = new Client(`127.0.0.1:${gw.port}`, grpc.credentials.createInsecure()) as unknown as {
    unary: Call;
    fail: Call;
    stream: Call;
    collect: Call;
    close(): void;
  };
  t.after(async () => {
    client.close();
    await gw.stop();
    server.forceShutdown();
  });
  const unary = await new Promise<Buffer>((resolve, reject) =>
    client.unary(Buffer.from('hi'), (err: Error | null, res: Buffer) => (err ? reject(err) : resolve(res))),
  );
  assert.equal(unary.toString(), 'echo:hi');
  const failure = await new Promise<grpc.ServiceError>((resolve) =>
    client.fail(Buffer.from('x'), (err: grpc.ServiceError) => resolve(err)),
  );
  assert.equal(failure.code, grpc.status.NOT_FOUND);
  assert.equal(failure.details, 'no such thing');
  const parts: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const call = client.stream(Buffer.from('go')) as grpc.ClientReadableStream<Buffer>;
    call.on('data', (d: Buffer) => parts.push(d.toString()));
    call.on('end', resolve);
    call.on('error', reject);
  });
  assert.deepEqual(parts, ['part 0', 'part 1', 'part 2', 'part 3', 'part 4']);
  const total = await new Promise<Buffer>((resolve, reject) => {
    const call = client.collect((err: Error | null, res: Buffer) =>
      err ? reject(err) : resolve(res),
    ) as grpc.ClientWritableStream<Buffer>;
    for (let i = 0; i < 10; i++) call.write(Buffer.alloc(1000, 0x61));
    call.end();
  });
  assert.equal(total.toString(), '10000');
});
