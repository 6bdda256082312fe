// Regression tests for defects a code review reproduced in the engine and the log ring: a timer re-armed
// during the wheel's sweep stranded for a whole revolution, a failed listen leaving the loop's timers
// running, arena slabs lost to writes on closed connections, the shipper counting a batch both dropped and
// shipped, and the TCP sink dropping its idle connection.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { describe, test } from 'node:test';
import { type Conn, type EventHandler, type EventLoop, type LogStats, serve, startLogShipper } from 'netloom';
import { server } from 'netloom/http1';
import { TimerWheel, type WheelNode } from '../../core/timer-wheel.ts';
import { waitFor } from '../helpers.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function assertAccounted(s: LogStats): void {
  const dropped = s.dropped.full + s.dropped.tooLarge + s.dropped.sink;
  assert.equal(
    s.written,
    s.shipped + dropped + s.sampledOut,
    `written ${s.written} != shipped ${s.shipped} + dropped ${dropped} + sampled ${s.sampledOut}`,
  );
}

/** A TCP server on 127.0.0.1:0 that keeps its connections (and can destroy them all). */
async function tcpServer(onConnection: (s: net.Socket) => void, options: net.ServerOpts = {}) {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer(options, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onConnection(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

describe('timer wheel', () => {
  type Node = WheelNode & { fires: number };

  test('a node re-armed during an advance for a time already past fires on the next advance', () => {
    const resolution = 10;
    const n: Node = { fires: 0, wheelAt: 0, wheelPrev: null, wheelNext: null, wheelSlot: -1 };
    const wheel: TimerWheel<Node> = new TimerWheel<Node>(resolution, (node, now) => {
      // First firing: re-arm for a time already past (a closing connection whose stale deadline passed).
      if (++node.fires === 1) wheel.schedule(node, now - 10 * resolution);
    });
    const start = Date.now();
    wheel.schedule(n, start + 1);
    wheel.advance(start + 4 * resolution); // one advance sweeping several slots
    assert.equal(n.fires, 1);
    wheel.advance(start + 5 * resolution);
    wheel.dispose();
    assert.equal(n.fires, 2, 'the re-armed node was stranded for a whole revolution');
  });

  test("a closing connection's linger ends on time even with a deadline armed before the close", async () => {
    // A peer that never sends FIN back: the close can only end by lingerTimeout.
    const peer = await tcpServer(() => {}, { allowHalfOpen: true });
    let t0 = 0;
    let closedAfter = -1;
    const engine = await serve(
      {
        onBoot(loop: EventLoop) {
          loop.dial(`127.0.0.1:${peer.port}`, {
            onOpen(conn: Conn) {
              conn.setDeadline(50); // e.g. a request deadline the protocol armed
              t0 = Date.now();
              conn.close(); // graceful: linger bounded by lingerTimeout
            },
            onClose() {
              closedAfter = Date.now() - t0;
            },
          });
        },
      },
      { loops: 1, lingerTimeout: 300 },
    );
    try {
      await waitFor(() => closedAfter !== -1, 2000, 'the lingering connection to close');
      assert.ok(closedAfter >= 250, `closed after ${closedAfter} ms, before lingerTimeout`);
      assert.ok(closedAfter < 1000, `closed after ${closedAfter} ms (lingerTimeout 300 ms)`);
    } finally {
      await engine.stop({ deadline: 100 });
      await peer.close();
    }
  });
});

describe('failed start', () => {
  test('serve() with one loop whose listen fails leaves nothing keeping the process alive', async () => {
    const core = new URL('../../core/index.ts', import.meta.url).href;
    const script = `
      import net from 'node:net';
      import { serve } from ${JSON.stringify(core)};
      const blocker = net.createServer();
      await new Promise((r) => blocker.listen(0, '127.0.0.1', r));
      const port = blocker.address().port;
      try {
        await serve(
          { onBoot(loop) { loop.every(50, () => {}); loop.after(60000, () => {}); } },
          { loops: 1, address: '127.0.0.1:' + port },
        );
        console.log('listened');
      } catch (err) {
        console.log('failed: ' + err.code);
      }
      blocker.close();
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const code = await Promise.race([exited, sleep(4000).then(() => 'running' as const)]);
    if (code === 'running') {
      child.kill('SIGKILL');
      await exited;
    }
    assert.match(out, /failed: EADDRINUSE/);
    assert.notEqual(code, 'running', 'the process was still alive 4 s after the failed serve()');
    assert.equal(code, 0, out);
  });
});

describe('arena', () => {
  test('reserve/commit and writes on a closed connection take no arena slab', async () => {
    let loop!: EventLoop;
    let lateWrites = false;
    const handler: EventHandler = {
      onTraffic(conn) {
        conn.discard();
        conn.close();
      },
      onClose(conn) {
        // The connection is gone (its slabs went back): a codec still serializing must not take new ones.
        const buf = conn.reserve(100);
        const end = conn.reservedAt + buf.write('late', conn.reservedAt, 'latin1');
        conn.commit(end);
        conn.write('late');
        conn.writeLatin1('late');
        conn.write(Buffer.alloc(32 * 1024));
        lateWrites = true;
      },
    };
    const engine = await serve(
      (l: EventLoop) => {
        loop = l;
        return handler;
      },
      { loops: 1 },
    );
    try {
      const s = net.connect(engine.port, '127.0.0.1');
      s.on('error', () => {});
      s.on('data', () => {});
      s.write('bye');
      s.on('end', () => s.end());
      await waitFor(() => lateWrites, 2000, 'the connection to close');
      assert.equal(loop.arena.outstanding, 0, 'arena slabs were taken and never returned');
      s.destroy();
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  test('res.end() after the client left takes no arena slab', async () => {
    let loop!: EventLoop;
    let answered = false;
    const engine = await serve(
      (l: EventLoop) => {
        loop = l;
        return server(async (req, res) => {
          await new Promise<void>((resolve) => req.onAbort(resolve)); // the connection is gone
          res.header('x-late', 'yes').end('too late');
          answered = true;
        });
      },
      { loops: 1 },
    );
    try {
      const s = net.connect(engine.port, '127.0.0.1');
      s.on('error', () => {});
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      await sleep(50);
      s.resetAndDestroy(); // the client gives up before the answer
      await waitFor(() => answered, 2000, 'the handler to answer');
      assert.equal(loop.arena.outstanding, 0, 'arena slabs were taken and never returned');
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });
});

describe('log shipping', () => {
  test('a batch settling after the stop deadline is counted once (written = shipped + dropped + sampled)', async () => {
    // A sink whose writes take 1.3 s and whose close takes 1 s: the batch in flight at the stop deadline is
    // counted as dropped, then settles while the sink closes.
    const sink = `export default function create() {
      return {
        write: () => new Promise((r) => setTimeout(r, 1300)),
        close: () => new Promise((r) => setTimeout(r, 1000)),
      };
    }`;
    const shipper = await startLogShipper({
      sink: { type: 'module', module: `data:text/javascript,${encodeURIComponent(sink)}` },
      compression: 'none',
      batch: { maxDelay: 10 },
    });
    const log = shipper.logger(0);
    for (let i = 0; i < 100; i++) log.info('hello', { i });
    await sleep(100); // the batch is out, at the sink
    const stats = await shipper.stop(200);
    assert.equal(stats.written, 100);
    assert.equal(stats.dropped.sink, 100, 'the batch in flight at the deadline is counted as dropped');
    assert.equal(stats.shipped, 0, 'and not as shipped as well');
    assertAccounted(stats);
  });

  test('the TCP sink keeps working after an idle period longer than its timeout', async () => {
    let received = '';
    const collector = await tcpServer((s) =>
      s.on('data', (d: Buffer) => {
        received += d;
      }),
    );
    const shipper = await startLogShipper({
      sink: { type: 'tcp', host: '127.0.0.1', port: collector.port, timeout: 300 },
      compression: 'none',
      batch: { maxDelay: 5 },
      pollInterval: 5,
    });
    let stopped = false;
    try {
      const log = shipper.logger(0);
      log.info('first');
      await waitFor(() => received.includes('first'), 1000, 'the first record');
      // The sink's connection sits idle a little longer than its timeout (a sink that takes that as an error
      // is still backing off from its reconnect when the next batch comes).
      await sleep(330);
      log.info('second');
      await waitFor(() => received.includes('second'), 1000, 'the second record').catch(() => {});
      const stats = await shipper.stop(1000);
      stopped = true;
      assert.equal(stats.dropped.sink, 0, 'a batch was dropped');
      assert.equal(stats.shipped, 2);
      assert.deepEqual(
        received
          .split('\n')
          .filter(Boolean)
          .map((l) => (JSON.parse(l) as { msg: string }).msg),
        ['first', 'second'],
      );
    } finally {
      if (!stopped) await shipper.stop(100);
      await collector.close();
    }
  });
});

describe('inbound views outside a traffic turn', () => {
  /** Sends `payload` (then FIN when `fin`) and collects what comes back until `expect` bytes are in. */
  function roundTrip(port: number, payload: Buffer, expect: number, fin: boolean): Promise<Buffer> {
    return new Promise((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      const parts: Buffer[] = [];
      let got = 0;
      const timer = setTimeout(() => {
        s.destroy();
        resolve(Buffer.concat(parts));
      }, 2000);
      s.on('data', (d: Buffer) => {
        parts.push(d);
        got += d.length;
        if (got >= expect) {
          clearTimeout(timer);
          s.destroy();
          resolve(Buffer.concat(parts));
        }
      });
      s.on('error', () => {});
      s.on('connect', () => (fin ? s.end(payload) : s.write(payload)));
    });
  }

  const FRAME = 10000;
  const frame = Buffer.alloc(FRAME);
  for (let i = 0; i < FRAME; i++) frame[i] = 0x41 + (i % 26);
  const echoed = Buffer.concat([frame, Buffer.from('\n')]);

  // A view of an owned slab, discarded in the same callback, was written by reference after the slab went
  // back to the arena: the next take (the staging slab of the '\n') overwrote it before the flush.
  test('a frame peeked, discarded and written from a timer goes out intact', async () => {
    const engine = await serve(
      {
        onTraffic(conn: Conn) {
          if (conn.inboundBuffered < FRAME) return; // the frame is kept in an owned slab across reads
          conn.pause();
          setTimeout(() => {
            const view = conn.peek(FRAME);
            conn.discard(FRAME);
            conn.write(view);
            conn.writeLatin1('\n');
            conn.resume();
          }, 20);
        },
      },
      { loops: 1 },
    );
    try {
      assert.ok((await roundTrip(engine.port, frame, FRAME + 1, false)).equals(echoed));
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  test('a frame peeked, discarded and written in onEof goes out intact', async () => {
    const engine = await serve(
      {
        onTraffic() {},
        onEof(conn: Conn) {
          const rest = conn.peek();
          conn.discard();
          conn.write(rest);
          conn.writeLatin1('\n');
        },
      },
      { loops: 1 },
    );
    try {
      assert.ok((await roundTrip(engine.port, frame, FRAME + 1, true)).equals(echoed));
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });

  test('a slab emptied outside a turn still goes back to the arena once the callback returns', async () => {
    let held = -1;
    const engine = await serve(
      (loop: EventLoop) => {
        return {
          onTraffic(conn: Conn) {
            if (conn.inboundBuffered < FRAME) return;
            setTimeout(() => {
              conn.discard();
              setTimeout(() => {
                held = loop.arena.outstanding;
                conn.write('done');
              }, 10);
            }, 10);
          },
        };
      },
      { loops: 1 },
    );
    try {
      await roundTrip(engine.port, frame, 4, false);
      assert.equal(held, 0, 'the emptied inbound slab was not returned');
    } finally {
      await engine.stop({ deadline: 100 });
    }
  });
});
