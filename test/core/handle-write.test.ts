// Direct handle writes (core/handle-write.ts): order against the socket's own path, graceful close with bytes
// still queued in libuv, resets, backpressure, the arena, unix sockets, dials, and the binding fallback.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Conn, EventHandler, serve } from 'netloom';
import { threadHandleWriter, type WriteOwner } from '../../core/handle-write.ts';
import { ioPath } from '../../core/node-internals.ts';

/** The writer loops use here, or null on the socket path (no binding, or NETLOOM_IO=portable). */
const handleWriter = ioPath().write === 'handle' ? threadHandleWriter() : null;

import { connect, prng, randomBytes, serveInline, unixPath, waitFor } from '../helpers.ts';

/** Counts direct handle writes per connection while `fn` runs (0 everywhere where the binding is missing). */
async function countingDirect<T>(fn: (direct: Map<WriteOwner, number>) => Promise<T>): Promise<T> {
  const direct = new Map<WriteOwner, number>();
  const writer = handleWriter as unknown as Record<'write' | 'writev', (...args: unknown[]) => number> | null;
  if (writer === null) return fn(direct);
  const saved = { write: writer.write, writev: writer.writev };
  for (const name of ['write', 'writev'] as const) {
    const original = saved[name];
    writer[name] = function (this: unknown, ...args: unknown[]) {
      const owner = args[args.length - 1] as WriteOwner;
      direct.set(owner, (direct.get(owner) ?? 0) + 1);
      return original.apply(this, args);
    };
  }
  try {
    return await fn(direct);
  } finally {
    writer.write = saved.write;
    writer.writev = saved.writev;
  }
}

/** Writes `payload` as a mix of small staged writes and large by-reference ones (so flushes use writev). */
function writeMixed(conn: Conn, payload: Buffer, rand: () => number): void {
  for (let i = 0; i < payload.length; ) {
    const r = rand();
    const size = Math.min(
      payload.length - i,
      r < 0.6 ? 1 + Math.floor(rand() * 4000) : 16 * 1024 + Math.floor(rand() * 200_000),
    );
    // Small pieces are copied into arena slabs; large ones go by reference (a copy the test owns).
    conn.write(size < 16 * 1024 ? payload.subarray(i, i + size) : Buffer.from(payload.subarray(i, i + size)));
    i += size;
  }
}

/** Reads everything until the peer's FIN, slowly at first (paused for `pauseMs`). */
function slowRead(s: net.Socket, pauseMs: number): Promise<{ data: Buffer; ended: boolean }> {
  const chunks: Buffer[] = [];
  let ended = false;
  s.pause();
  setTimeout(() => s.resume(), pauseMs);
  s.on('data', (d: Buffer) => chunks.push(d));
  s.on('end', () => {
    ended = true;
  });
  s.on('error', () => {});
  return new Promise((resolve) => s.once('close', () => resolve({ data: Buffer.concat(chunks), ended })));
}

/**
 * Serves a handler that queues 8 MiB (64 x 128 KiB) at open, and counts `onClose` calls. `close` also
 * calls `close()` right after.
 */
async function serveQueued(options: Parameters<typeof serve>[1], close = false) {
  const state = {
    closes: 0,
    closeErr: null as Error | undefined | null,
    conn: undefined as Conn | undefined,
  };
  const served = await serveInline(
    {
      onOpen(c) {
        state.conn = c;
        for (let i = 0; i < 64; i++) c.write(Buffer.alloc(128 * 1024, i));
        c.flush();
        if (close) c.close();
      },
      onClose(_c, err) {
        state.closes++;
        state.closeErr = err;
      },
    },
    options,
  );
  return { ...served, state };
}

describe('direct handle writes', { timeout: 30_000 }, () => {
  test('close() with MiBs still queued in libuv delivers every byte, then FIN (poisoned arena)', async () => {
    const payload = randomBytes(prng(7), 12 * 1024 * 1024);
    let queuedAtClose = 0;
    let closeErr: Error | undefined | null = null;
    const { engine, port } = await serveInline(
      {
        onOpen(conn) {
          writeMixed(conn, payload, prng(8));
          conn.flush();
          queuedAtClose = conn.outboundBuffered;
          conn.close();
        },
        onClose(_c, err) {
          closeErr = err;
        },
      },
      { poisonViews: true, highWaterMark: 32 * 1024 * 1024, writeBufferCap: 64 * 1024 * 1024 },
    );
    try {
      const s = await connect({ port });
      const { data, ended } = await slowRead(s, 300);
      assert.ok(queuedAtClose > 0, 'bytes were still queued when close() ran');
      assert.equal(ended, true, 'FIN, not a reset');
      assert.equal(data.length, payload.length);
      assert.ok(data.equals(payload), 'byte-exact');
      await waitFor(() => closeErr !== null);
      assert.equal(closeErr, undefined);
    } finally {
      await engine.stop();
    }
  });

  test('a stream written over many turns to a slow reader arrives in order (poisoned arena, writev)', async () => {
    const payload = randomBytes(prng(21), 8 * 1024 * 1024);
    let sent = 0;
    let paused = false;
    const rand = prng(22);
    const handler: EventHandler = {
      onOpen(conn) {
        pump(conn);
      },
      onWritable(conn) {
        pump(conn);
      },
    };
    function pump(conn: Conn): void {
      while (sent < payload.length) {
        const size = Math.min(payload.length - sent, 1 + Math.floor(rand() * rand() * 100_000));
        const piece = payload.subarray(sent, sent + size);
        conn.write(size < 16 * 1024 ? piece : Buffer.from(piece));
        sent += size;
        if (!conn.whenWritable()) {
          paused = true;
          return;
        }
      }
      conn.close();
    }
    const { engine, port } = await serveInline(handler, {
      poisonViews: true,
      highWaterMark: 256 * 1024,
      lowWaterMark: 64 * 1024,
    });
    try {
      const s = await connect({ port });
      const { data, ended } = await slowRead(s, 200);
      assert.equal(paused, true, 'whenWritable() said no at least once');
      assert.equal(ended, true);
      assert.ok(data.equals(payload), `byte-exact (${data.length} of ${payload.length})`);
    } finally {
      await engine.stop();
    }
  });

  test('a streaming writer to a slow reader sees whenWritable false, then onWritable; memory stays bounded; reading pauses and resumes', async () => {
    const highWaterMark = 512 * 1024;
    const lowWaterMark = 128 * 1024;
    const total = 24 * 1024 * 1024;
    let sent = 0;
    let refusals = 0;
    let writables = 0;
    let maxOutbound = 0;
    let conn!: Conn;
    let sawPausedReading = false;
    let received = 0;
    let streaming = false;
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    function pump(c: Conn): void {
      while (sent < total) {
        c.write(chunk);
        sent += chunk.length;
        maxOutbound = Math.max(maxOutbound, c.outboundBuffered);
        if (!c.whenWritable()) {
          refusals++;
          maxOutbound = Math.max(maxOutbound, c.outboundBuffered);
          return;
        }
      }
    }
    const { engine, port } = await serveInline(
      {
        onOpen(c) {
          conn = c;
        },
        onTraffic(c) {
          received += c.discard();
          // Answer with a lot, until above the high-water mark: reading must stop.
          if (received > 1) return;
          for (let i = 0; i < 200 && c.outboundBuffered <= highWaterMark; i++) {
            c.write(chunk);
            c.flush();
          }
          maxOutbound = Math.max(maxOutbound, c.outboundBuffered);
          if (!c.reading) sawPausedReading = true;
        },
        onWritable(c) {
          writables++;
          if (streaming) pump(c);
        },
      },
      { highWaterMark, lowWaterMark, writeBufferCap: 8 * 1024 * 1024 },
    );
    try {
      const s = await connect({ port });
      s.on('error', () => {});
      s.pause();
      await waitFor(() => conn !== undefined);
      // First: inbound traffic answered above the high-water mark pauses reading.
      s.write('x');
      await waitFor(() => sawPausedReading, 3000, 'reading paused by backpressure');
      assert.equal(conn.reading, false);
      s.write('more');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(received, 1, 'nothing read while above the high-water mark');
      // Drain: reading resumes, the queued 'more' arrives.
      let got = 0;
      s.on('data', (d: Buffer) => {
        got += d.length;
      });
      s.resume();
      await waitFor(() => received === 5, 5000, 'reading resumed');
      await waitFor(() => conn.outboundBuffered === 0, 5000, 'drained');
      // Then: a streaming writer.
      s.pause();
      const before = got;
      streaming = true;
      pump(conn);
      assert.ok(refusals > 0, 'whenWritable() said no');
      assert.ok(sent < total);
      await new Promise((r) => setTimeout(r, 100));
      const writablesWhilePaused = writables;
      s.resume();
      await waitFor(() => sent === total, 10_000, 'the stream finished');
      await waitFor(() => got - before >= total, 10_000, 'the client got it all');
      assert.ok(writables > writablesWhilePaused, 'onWritable came after the reader resumed');
      assert.ok(maxOutbound <= highWaterMark + chunk.length, `max outbound ${maxOutbound}`);
      s.destroy();
    } finally {
      await engine.stop({ deadline: 200 });
    }
  });

  test('a peer that resets while MiBs are queued in libuv: onClose once with an error, no hang', async () => {
    const { engine, port, state } = await serveQueued({
      highWaterMark: 32 * 1024 * 1024,
      writeBufferCap: 64 * 1024 * 1024,
    });
    try {
      const s = await connect({ port });
      s.pause();
      await waitFor(() => (state.conn?.outboundBuffered ?? 0) > 0, 3000, 'queued');
      s.resetAndDestroy();
      await waitFor(() => state.closes > 0, 5000, 'onClose');
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(state.closes, 1);
      assert.ok(state.closeErr instanceof Error, 'onClose got an error');
      assert.equal(state.conn!.outboundBuffered, 0, 'no queued bytes left counted');
      assert.equal(engine.stats().total.open, 0);
    } finally {
      await engine.stop({ deadline: 500 });
    }
  });

  for (const closing of [false, true]) {
    test(`a peer that resets while reading is paused by backpressure${closing ? ' and close() was called' : ''}: onClose once with an error`, async () => {
      // Default marks (1 MiB high): 8 MiB is far above, so reading stops.
      const { engine, port, state } = await serveQueued({}, closing);
      try {
        const s = await connect({ port });
        s.pause();
        await waitFor(() => (state.conn?.outboundBuffered ?? 0) > 1024 * 1024, 3000, 'queued');
        if (!closing) assert.equal(state.conn!.reading, false, 'reading paused by backpressure');
        s.resetAndDestroy();
        await waitFor(() => state.closes > 0, 5000, 'onClose');
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(state.closes, 1);
        assert.ok(state.closeErr instanceof Error, 'onClose got an error');
        assert.equal(state.conn!.outboundBuffered, 0);
      } finally {
        await engine.stop({ deadline: 500 });
      }
    });
  }

  test('destroy() while direct writes are queued: onClose once, the cancelled writes are accounted', async () => {
    const { engine, port, state } = await serveQueued({
      highWaterMark: 32 * 1024 * 1024,
      writeBufferCap: 64 * 1024 * 1024,
    });
    try {
      const s = await connect({ port });
      s.on('error', () => {});
      s.pause();
      await waitFor(() => (state.conn?.outboundBuffered ?? 0) > 0, 3000, 'queued');
      const boom = new Error('boom');
      state.conn!.destroy(boom);
      await waitFor(() => state.closes > 0, 5000, 'onClose');
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(state.closes, 1);
      assert.equal(state.closeErr, boom);
      assert.equal(state.conn!.outboundBuffered, 0);
      s.destroy();
    } finally {
      await engine.stop();
    }
  });

  test('a dial writing MiBs while it connects, then more while the socket queue drains, then direct: all in order', async () => {
    const payload = randomBytes(prng(31), 10 * 1024 * 1024);
    const got: Buffer[] = [];
    let upstreamEnded!: () => void;
    const ended = new Promise<void>((r) => {
      upstreamEnded = r;
    });
    const upstream = net.createServer((s) => {
      s.on('error', () => {});
      s.pause();
      setTimeout(() => s.resume(), 150); // slow at first: the connect-time bytes stay in the socket's queue
      s.on('data', (d: Buffer) => got.push(d));
      s.on('end', () => {
        s.end();
        upstreamEnded();
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const upstreamPort = (upstream.address() as net.AddressInfo).port;
    const { engine, loop } = await serveInline({}, { highWaterMark: 32 * 1024 * 1024 });
    let dialErr: Error | undefined | null = null;
    let queuedInSocketAtOpen = 0;
    let socketQueueSeenLater = false;
    try {
      const direct = await countingDirect(async (direct) => {
        const rand = prng(32);
        let at = 0;
        const next = (c: Conn, size: number) => {
          const end = Math.min(payload.length, at + size);
          writeMixed(c, payload.subarray(at, end), rand);
          at = end;
        };
        const conn = loop.dial(`127.0.0.1:${upstreamPort}`, {
          onOpen(c) {
            queuedInSocketAtOpen = (c as unknown as { socket: net.Socket }).socket.writableLength;
            next(c, 1024 * 1024);
            const socket = (c as unknown as { socket: net.Socket }).socket;
            const more = () => {
              if (socket.writableLength > 0) socketQueueSeenLater = true;
              // Past 6 MiB, let the socket's queue drain once so the rest goes straight to the handle.
              if (at >= 6 * 1024 * 1024 && at < 7 * 1024 * 1024 && socket.writableLength > 0) {
                setTimeout(more, 2);
                return;
              }
              if (at >= payload.length) {
                c.close();
                return;
              }
              next(c, 16 * 1024 + Math.floor(rand() * 256 * 1024));
              setTimeout(more, 2);
            };
            setImmediate(more);
          },
          onClose(_c, err) {
            dialErr = err;
          },
        });
        next(conn, 4 * 1024 * 1024); // while connecting: the socket's own path
        conn.flush();
        next(conn, 100);
        await ended;
        return direct.get(conn) ?? 0;
      });
      const data = Buffer.concat(got);
      assert.ok(queuedInSocketAtOpen > 0, 'the connect-time bytes were in the socket queue at open');
      assert.ok(socketQueueSeenLater, 'later turns found bytes in the socket queue');
      if (handleWriter !== null) assert.ok(direct > 0, 'the direct path was used once the queue drained');
      assert.equal(data.length, payload.length);
      assert.ok(data.equals(payload), 'byte-exact and in order');
      await waitFor(() => dialErr !== null);
      assert.equal(dialErr, undefined);
    } finally {
      await engine.stop();
      upstream.close();
    }
  });

  test('unix socket: MiBs to a slow reader, then close(): byte-exact, FIN', async () => {
    const path = unixPath();
    const payload = randomBytes(prng(41), 8 * 1024 * 1024);
    const { engine } = await serveInline(
      {
        onOpen(conn) {
          writeMixed(conn, payload, prng(42));
          conn.close();
        },
      },
      { address: `unix://${path}`, poisonViews: true, highWaterMark: 32 * 1024 * 1024 },
    );
    try {
      const s = await connect({ path });
      const { data, ended } = await slowRead(s, 200);
      assert.equal(ended, true);
      assert.ok(data.equals(payload), `byte-exact (${data.length} of ${payload.length})`);
    } finally {
      await engine.stop();
    }
  });
});

/** Reads until the peer's FIN at a throttled pace: one chunk per `everyMs`. */
function throttledRead(s: net.Socket, everyMs: number): Promise<{ data: Buffer; ended: boolean }> {
  const chunks: Buffer[] = [];
  let ended = false;
  s.pause();
  const timer = setInterval(() => s.resume(), everyMs);
  s.on('data', (d: Buffer) => {
    chunks.push(d);
    s.pause();
  });
  s.on('end', () => {
    ended = true;
  });
  s.on('error', () => {});
  return new Promise((resolve) =>
    s.once('close', () => {
      clearInterval(timer);
      resolve({ data: Buffer.concat(chunks), ended });
    }),
  );
}

describe('a graceful close with bytes still queued', { timeout: 30_000 }, () => {
  async function closeAfterWriting(payload: Buffer, options: Parameters<typeof serve>[1]) {
    let queuedAtClose = 0;
    let closeErr: Error | undefined | null = null;
    const served = await serveInline(
      {
        onTraffic(conn) {
          conn.discard();
          conn.write(Buffer.from(payload));
          conn.flush();
          queuedAtClose = conn.outboundBuffered;
          conn.close();
        },
        onClose(_c, err) {
          closeErr = err;
        },
      },
      { highWaterMark: 64 * 1024 * 1024, writeBufferCap: 128 * 1024 * 1024, ...options },
    );
    return { ...served, queuedAtClose: () => queuedAtClose, closeErr: () => closeErr };
  }

  test("the peer's FIN does not cut the response short: every byte arrives, then FIN", async () => {
    const payload = randomBytes(prng(21), 16 * 1024 * 1024);
    const srv = await closeAfterWriting(payload, {});
    try {
      const s = await connect({ port: srv.port });
      s.end('go'); // request, then half-close at once (an HTTP/1.0-style client, or `shutdown(SHUT_WR)`)
      const { data, ended } = await slowRead(s, 300);
      assert.ok(srv.queuedAtClose() > 0, 'bytes were still queued when close() ran');
      assert.equal(data.length, payload.length, 'the whole response arrived');
      assert.ok(data.equals(payload), 'byte-exact');
      assert.equal(ended, true, 'FIN, not a reset');
      await waitFor(() => srv.closeErr() !== null);
      assert.equal(srv.closeErr(), undefined);
    } finally {
      await srv.engine.stop();
    }
  });

  test('lingerTimeout counts time without progress: a slow but steady reader gets every byte', async () => {
    const payload = randomBytes(prng(22), 24 * 1024 * 1024);
    const srv = await closeAfterWriting(payload, { lingerTimeout: 300 });
    try {
      const s = await connect({ port: srv.port });
      s.write('go');
      const started = Date.now();
      const { data, ended } = await throttledRead(s, 4);
      const took = Date.now() - started;
      assert.ok(took > 600, `the read took ${took} ms, not long enough to outlast lingerTimeout twice`);
      assert.equal(data.length, payload.length, 'the whole response arrived');
      assert.ok(data.equals(payload), 'byte-exact');
      assert.equal(ended, true);
    } finally {
      await srv.engine.stop();
    }
  });

  test("lingerTimeout on the socket's own path: a steady reader of writes Node queued behind another gets every byte", async () => {
    // Without the direct writer (pending deprecation, or a dial's first writes) a flush while another is in
    // flight waits in the socket's JS queue: when libuv takes it over, writableLength + writeQueueSize
    // counts it twice, which must not read as "no progress".
    const first = randomBytes(prng(24), 4 * 1024 * 1024);
    const second = randomBytes(prng(25), 24 * 1024 * 1024);
    const payload = Buffer.concat([first, second]);
    let queuedAtClose = 0;
    const { engine, port, loop } = await serveInline(
      {
        onTraffic(conn) {
          conn.discard();
          conn.write(Buffer.from(first));
          conn.flush();
          conn.write(Buffer.from(second));
          conn.flush();
          queuedAtClose = conn.outboundBuffered;
          conn.close();
        },
      },
      { highWaterMark: 64 * 1024 * 1024, writeBufferCap: 128 * 1024 * 1024, lingerTimeout: 300 },
    );
    // This loop writes through the socket only.
    (loop as unknown as { writer: unknown }).writer = null;
    try {
      const s = await connect({ port });
      s.write('go');
      const { data, ended } = await throttledRead(s, 4);
      assert.ok(queuedAtClose > second.length, 'both writes were still queued when close() ran');
      assert.equal(data.length, payload.length, 'the whole response arrived');
      assert.ok(data.equals(payload), 'byte-exact');
      assert.equal(ended, true);
    } finally {
      await engine.stop();
    }
  });

  test('a peer that stops reading is still cut off once lingerTimeout passes without progress', async () => {
    const payload = randomBytes(prng(23), 24 * 1024 * 1024);
    const srv = await closeAfterWriting(payload, { lingerTimeout: 300 });
    try {
      const s = await connect({ port: srv.port });
      s.write('go');
      s.pause(); // never reads
      s.on('error', () => {});
      const started = Date.now();
      await waitFor(() => srv.closeErr() !== null, 5000, 'the lingering connection to be destroyed');
      const took = Date.now() - started;
      assert.ok(took >= 250 && took < 2000, `destroyed after ${took} ms (lingerTimeout 300 ms)`);
      s.destroy();
    } finally {
      await srv.engine.stop();
    }
  });
});

describe('the stream_wrap binding', { timeout: 30_000 }, () => {
  const script = `
    import net from 'node:net';
    import { serve } from ${JSON.stringify(new URL('../../core/index.ts', import.meta.url).href)};
    const engine = await serve(() => ({ onTraffic(c) { c.write(c.next()); } }), { loops: 1 });
    const s = net.connect(engine.port, '127.0.0.1');
    s.end('ping');
    let got = '';
    s.on('data', (d) => (got += d));
    await new Promise((r) => s.on('close', r));
    await engine.stop();
    console.log(JSON.stringify({ got, direct: engine.stats().io.write === 'handle' }));
  `;
  const node = process.execPath;
  const cwd = fileURLToPath(new URL('../../', import.meta.url));

  function run(args: string[], env: NodeJS.ProcessEnv) {
    const r = spawnSync(node, [...args, '--input-type=module', '-e', script], {
      cwd,
      env: { ...process.env, NODE_OPTIONS: '', NODE_PENDING_DEPRECATION: '', NETLOOM_IO: '', ...env },
      encoding: 'utf8',
      timeout: 10_000,
    });
    return r;
  }

  for (const [name, args, env] of [
    ['--pending-deprecation', ['--pending-deprecation'], {}],
    ['--pending_deprecation', ['--pending_deprecation'], {}],
    ['NODE_PENDING_DEPRECATION=1', [], { NODE_PENDING_DEPRECATION: '1' }],
    ['NODE_OPTIONS=--pending-deprecation', [], { NODE_OPTIONS: '--pending-deprecation' }],
  ] as const) {
    test(`${name}: falls back to the socket path without a DEP0111 warning`, () => {
      const r = run([...args], env);
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /DEP0111|process\.binding/);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
      assert.equal(out.got, 'ping');
      assert.equal(out.direct, false);
    });
  }

  test('without the flag the direct path is in use and nothing is printed', () => {
    const r = run([], {});
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, 'netloom: I/O path read=onread write=handle strings=native\n');
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(out.got, 'ping');
    assert.equal(out.direct, true);
  });
});
