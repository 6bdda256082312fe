// Shared helpers for tests: a seeded PRNG, socket clients, polling, an inline server.

import { readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EventHandler, type EventLoop, serve } from 'netloom';

/** mulberry32: small, fast, seeded. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (rand() * 256) | 0;
  return b;
}

export type Target = { port: number } | { path: string };

export function connect(target: Target): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = 'path' in target ? net.connect(target.path) : net.connect(target.port, '127.0.0.1');
    s.setNoDelay(true);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Sends `payload` in random-sized chunks and resolves with everything echoed back once it is all in. */
export async function echoRoundTrip(target: Target, payload: Buffer, rand: () => number): Promise<Buffer> {
  return echoOver(await connect(target), payload, rand);
}

/** {@link echoRoundTrip} over a socket already connected. */
export async function echoOver(s: net.Socket, payload: Buffer, rand: () => number): Promise<Buffer> {
  const received: Buffer[] = [];
  let got = 0;
  const done = new Promise<Buffer>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      received.push(d);
      got += d.length;
      if (got >= payload.length) {
        s.end();
        resolve(Buffer.concat(received));
      }
    });
    s.on('error', reject);
    s.on('close', () => {
      if (got < payload.length) reject(new Error(`closed after ${got} of ${payload.length} bytes`));
    });
  });
  for (let i = 0; i < payload.length; ) {
    const size = Math.min(payload.length - i, 1 + Math.floor(rand() * rand() * 65536));
    if (!s.write(payload.subarray(i, i + size))) await new Promise((r) => s.once('drain', r));
    i += size;
    if (rand() < 0.05) await new Promise((r) => setImmediate(r));
  }
  return done;
}

/** Polls `check` until it returns true or `ms` pass. */
export async function waitFor(check: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves when the socket closes, with whatever it received. */
export function readUntilClose(s: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve) => {
    s.once('close', () => resolve(Buffer.concat(chunks)));
    s.on('error', () => {});
  });
}

/**
 * The kernel's queues of the IPv4 TCP socket `local` -> `remote` (ports on 127.0.0.1), from /proc/net/tcp:
 * `tx` bytes written and not yet acknowledged by the peer, `rx` bytes received and not yet read by the
 * process. Null when the socket is not listed (or /proc is unavailable).
 */
export function kernelQueues(localPort: number, remotePort: number): { tx: number; rx: number } | null {
  let table: string;
  try {
    table = readFileSync('/proc/net/tcp', 'latin1');
  } catch {
    return null;
  }
  const hex = (port: number) => `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const local = hex(localPort);
  const remote = hex(remotePort);
  for (const line of table.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[2] === remote) {
      const [tx, rx] = (f[4] ?? '0:0').split(':');
      return { tx: Number.parseInt(tx!, 16), rx: Number.parseInt(rx!, 16) };
    }
  }
  return null;
}

let unixCounter = 0;
export function unixPath(): string {
  return join(tmpdir(), `netloom-${process.pid}-${unixCounter++}.sock`);
}

/** Serves an inline handler on one loop and hands back the loop. */
export async function serveInline(handler: EventHandler, options: Parameters<typeof serve>[1] = {}) {
  let loop!: EventLoop;
  const engine = await serve(
    (l: EventLoop) => {
      loop = l;
      return handler;
    },
    { loops: 1, ...options },
  );
  return { engine, loop, port: engine.port };
}

/** A TCP port free on 127.0.0.1 a moment ago (for configurations that name their ports). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
