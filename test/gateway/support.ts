// Helpers for gateway tests: upstreams on node:http or raw sockets (port 0), a gateway on an inline
// configuration, an HTTP client with its own agent, and polling.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { type Gateway, type GatewayOptions, StaticConfigSource, startGateway } from 'netloom/gateway';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** An upstream server on 127.0.0.1:0 that counts the connections and requests it sees. */
export interface TestUpstream {
  readonly port: number;
  /** `127.0.0.1:port`, as a target address. */
  readonly address: string;
  /** Connections accepted so far. */
  connections: number;
  /** Requests seen so far. */
  requests: number;
  close(): Promise<void>;
}

/** A node:http upstream running `handler`. */
export async function httpUpstream(
  handler: http.RequestListener,
): Promise<TestUpstream & { server: http.Server }> {
  const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    up.requests++;
    handler(req, res);
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    up.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const up = {
    server,
    port,
    address: `127.0.0.1:${port}`,
    connections: 0,
    requests: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return up;
}

/** What {@link echoHandler} answers: the request as the upstream received it. */
export interface Echo {
  /** Which upstream answered (its name). */
  name: string;
  method: string;
  url: string;
  /** Header pairs as received (names lower-cased by node:http, repeated fields kept). */
  headers: [string, string][];
  bodyLength: number;
  bodySha: string;
  trailers: Record<string, string>;
}

/** An upstream handler answering JSON that describes the request it received (see {@link Echo}). */
export function echoHandler(name: string): http.RequestListener {
  return (req, res) => {
    const hash = createHash('sha256');
    let length = 0;
    req.on('data', (d: Buffer) => {
      hash.update(d);
      length += d.length;
    });
    req.on('end', () => {
      const headers: [string, string][] = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2)
        headers.push([req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!]);
      const echo: Echo = {
        name,
        method: req.method ?? '',
        url: req.url ?? '',
        headers,
        bodyLength: length,
        bodySha: hash.digest('hex'),
        trailers: req.trailers as Record<string, string>,
      };
      const body = JSON.stringify(echo);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  };
}

/** First value of header `name` in an {@link Echo}'s pairs. */
export function echoed(echo: Echo, name: string): string | undefined {
  return echo.headers.find(([n]) => n === name)?.[1];
}

/** Every value of header `name` in an {@link Echo}'s pairs. */
export function echoedAll(echo: Echo, name: string): string[] {
  return echo.headers.filter(([n]) => n === name).map(([, v]) => v);
}

/**
 * A raw-socket upstream: `respond` gets each request head (as latin1 text, body read when it has a
 * Content-Length) and the socket, and writes whatever bytes it likes.
 */
export async function rawUpstream(
  respond: (head: string, body: Buffer, socket: net.Socket) => void,
): Promise<TestUpstream> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    up.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        const body = buf.subarray(end + 4, end + 4 + length);
        buf = buf.subarray(end + 4 + length);
        up.requests++;
        respond(head, body, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const up: TestUpstream = {
    port,
    address: `127.0.0.1:${port}`,
    connections: 0,
    requests: 0,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return up;
}

/** A 127.0.0.1 port nothing listens on (bound, then closed): connecting to it is refused. */
export async function deadAddress(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

/** A configuration object with one listener on port 0 and loops: 1. */
export function gatewayConfig(
  upstreams: Record<string, Record<string, unknown>>,
  routes: Record<string, unknown>[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { listeners: [{ address: '127.0.0.1:0', loops: 1 }], upstreams, routes, ...extra };
}

/** One upstream `name` over `addresses` plus extra upstream settings. */
export function upstreamOf(
  addresses: string[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return { targets: addresses.map((address) => ({ address })), ...extra };
}

export interface RunningGateway {
  gateway: Gateway;
  source: StaticConfigSource;
  port: number;
  url: string;
  /** Stops the gateway; connections still busy are cut after `deadline` ms (default 1000). */
  stop(deadline?: number): Promise<void>;
}

/** Starts a gateway on an inline configuration (not watched unless asked). */
export async function startTestGateway(
  config: Record<string, unknown>,
  options: Omit<GatewayOptions, 'source'> = {},
): Promise<RunningGateway> {
  const source = new StaticConfigSource(config);
  const gateway = await startGateway({ watch: false, ...options, source });
  const port = gateway.port();
  return {
    gateway,
    source,
    port,
    url: `http://127.0.0.1:${port}`,
    stop: (deadline = 1000) => gateway.stop(deadline),
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  text: string;
}

export interface SendOptions {
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  body?: string | Buffer;
  /** Send the body chunked (no Content-Length), in these pieces. */
  chunks?: (string | Buffer)[];
  agent?: http.Agent | false;
}

/** One request with node:http (a fresh connection unless an agent is given). */
export function send(port: number, path: string, options: SendOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: options.agent ?? false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(parts);
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body,
            text: body.toString(),
          });
        });
      },
    );
    req.on('error', reject);
    if (options.chunks !== undefined) {
      for (const c of options.chunks) req.write(c);
      req.end();
    } else {
      req.end(options.body);
    }
  });
}

/** {@link send} and parse the JSON body. */
export async function sendJson<T>(
  port: number,
  path: string,
  options: SendOptions = {},
): Promise<Reply & { json: T }> {
  const reply = await send(port, path, options);
  return { ...reply, json: JSON.parse(reply.text) as T };
}

/**
 * Crashes loop `index` of a gateway served with `fixtures/targeted-crash-handler.ts`, once: sends
 * `/crash/<index>` over fresh connections until one lands there (it is never answered: its connection dies
 * with the worker). Stopping at that one matters: the restarted loop accepts before the main thread hears
 * it is up, so sending on until the restart event could crash it again. Throws if none landed.
 */
export async function crashLoop(port: number, index = 0): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const landed = await send(port, `/crash/${index}`).then(
      () => false,
      () => true,
    );
    if (landed) return;
  }
  throw new Error(`no /crash/${index} landed on loop ${index} in 50 tries`);
}

/** Polls `check` (sync or async) every 10 ms until it is true; throws after `ms`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  ms = 5000,
  what = 'condition',
): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** An upstream answering every request with `name` (a 1-byte body), as fast as it can parse them. */
export async function namedUpstream(name: string) {
  const answer = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${name.length}\r\n\r\n${name}`);
  const sockets = new Set<net.Socket>();
  let requests = 0;
  /** When each request arrived (ms, performance.now()). */
  const times: number[] = [];
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let pending = '';
    s.on('data', (d: Buffer) => {
      pending += d.toString('latin1');
      let end = pending.indexOf('\r\n\r\n');
      while (end !== -1) {
        requests++;
        times.push(performance.now());
        s.write(answer);
        pending = pending.slice(end + 4);
        end = pending.indexOf('\r\n\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    times,
    get requests() {
      return requests;
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Requests an upstream received in each of the three whole seconds after its first request (the first
 * second holds a limit's burst), and their median: a stall of the load generator (the test's thread,
 * shared with other tests) can starve one second.
 */
export function secondsAfterTheFirst(times: readonly number[]): { perSecond: number[]; median: number } {
  const t0 = times[0]!;
  const perSecond = [0, 0, 0];
  for (const at of times) {
    const k = Math.floor((at - t0) / 1000) - 1;
    if (k >= 0 && k < 3) perSecond[k]!++;
  }
  return { perSecond, median: [...perSecond].sort((x, y) => x - y)[1]! };
}

/**
 * Sends one GET per entry of `requests` (extra header lines each), pipelined in batches over `conns`
 * keep-alive connections; returns each response's body, in request order (every response must be a 200).
 */
export async function pipelined(port: number, requests: string[], conns = 8, batch = 500): Promise<string[]> {
  const replies = await pipelinedReplies(port, requests, conns, batch);
  for (const r of replies) assert.equal(r.status, 200, r.head);
  return replies.map((r) => r.body);
}

/** One response of {@link pipelinedReplies}. */
export interface PipelinedReply {
  status: number;
  head: string;
  body: string;
}

/** {@link pipelined}, returning each response's status, head and body. */
export async function pipelinedReplies(
  port: number,
  requests: string[],
  conns = 8,
  batch = 500,
): Promise<PipelinedReply[]> {
  const answers: PipelinedReply[] = new Array(requests.length);
  let next = 0;
  const worker = async () => {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    let buffered = '';
    let waiting: (() => void) | null = null;
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1');
      waiting?.();
    });
    try {
      while (next < requests.length) {
        const from = next;
        const to = Math.min(requests.length, from + batch);
        next = to;
        let out = '';
        for (let i = from; i < to; i++) out += `GET / HTTP/1.1\r\nhost: t\r\n${requests[i]}\r\n`;
        socket.write(out);
        for (let i = from; i < to; i++) {
          // One response: head, then a content-length body.
          for (;;) {
            const end = buffered.indexOf('\r\n\r\n');
            if (end !== -1) {
              const length = Number(/content-length: (\d+)/i.exec(buffered.slice(0, end))?.[1] ?? 0);
              if (buffered.length >= end + 4 + length) {
                const head = buffered.slice(0, end);
                answers[i] = {
                  status: Number(head.slice(9, 12)),
                  head,
                  body: buffered.slice(end + 4, end + 4 + length),
                };
                buffered = buffered.slice(end + 4 + length);
                break;
              }
            }
            await new Promise<void>((resolve, reject) => {
              const timer = setTimeout(() => reject(new Error('no response within 10 s')), 10_000);
              waiting = () => {
                clearTimeout(timer);
                waiting = null;
                resolve();
              };
            });
          }
        }
      }
    } finally {
      socket.destroy();
    }
  };
  await Promise.all(Array.from({ length: conns }, worker));
  return answers;
}
