// Review of Conn.writeShared (commit 589c241): by-reference writes mixed with staged writes, over real
// sockets, on the direct and (NETLOOM_IO=portable) socket paths and on TLS.
// Expected to FAIL until fixed: the "engine-lent memory" suite. writeShared keeps a view of engine memory
// (the loop's shared read buffer, an inbound arena slab) by reference where write() copies it
// (core/conn.ts writeShared vs write's arena.owns branch), so the bytes that leave are whatever the engine
// wrote there since (the next read, the arena's poison, another connection's staging).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type net from 'node:net';
import { after, describe, test } from 'node:test';
import tls from 'node:tls';
import type { Conn } from 'netloom';
import { connect, serveInline, waitFor } from '../../helpers.ts';
import { TestPki } from '../../tls/certs.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('share', ['share.test']);
const TLS = { cert: cert.cert, key: cert.key };

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Client = net.Socket | tls.TLSSocket;
async function open(port: number, secure: boolean): Promise<Client> {
  if (!secure) return connect({ port });
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', servername: 'share.test', ca: pki.ca.cert }, () =>
      resolve(s),
    );
    s.once('error', reject);
  });
}

/** Everything the server sends until it closes (bounded). */
function collect(s: Client, ms = 8000): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`timed out after ${Buffer.concat(chunks).length} bytes`));
    }, ms);
    s.once('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    s.on('error', () => {});
  });
}

/** The writes of `mixedTurn`, as the bytes they must put on the wire, in call order. */
function mixedTurn(c: Conn, shared: Buffer[], expect: Buffer[]): void {
  const w = (b: Buffer) => {
    c.write(b);
    expect.push(b);
  };
  const s = (b: Buffer) => {
    shared.push(b);
    c.writeShared(b);
    expect.push(b);
  };
  w(Buffer.from('<a>'));
  s(Buffer.from('[shared 1]'));
  w(Buffer.from('<b>'));
  c.writeLatin1('<latin1 é>');
  expect.push(Buffer.from('<latin1 é>', 'latin1'));
  const r = c.reserve(8);
  const at = c.reservedAt;
  r.write('<rsv>', at, 'latin1');
  c.commit(at + 5);
  expect.push(Buffer.from('<rsv>'));
  s(Buffer.from('[shared 2]'));
  c.writeShared(Buffer.alloc(0)); // nothing
  s(Buffer.from('[shared 3]')); // two shared in a row
  c.writev([Buffer.from('<v1>'), '<v2>', Buffer.alloc(20_000, 0x76)]);
  expect.push(Buffer.from('<v1><v2>'), Buffer.alloc(20_000, 0x76));
  s(randomBytes(40_000)); // large, by reference either way
  w(Buffer.from('<c>'));
  c.flush(); // mid-turn: on TLS this may leave later bytes waiting behind a write in flight
  s(Buffer.from('[shared 4]'));
  w(randomBytes(5000));
  s(randomBytes(3000));
  c.write('<d>');
  expect.push(Buffer.from('<d>'));
}

for (const secure of [false, true]) {
  describe(`writeShared ${secure ? 'TLS' : 'TCP'} (io: ${process.env.NETLOOM_IO || 'default'})`, () => {
    test('mixed with write/writeLatin1/reserve+commit/writev and a mid-turn flush: exact call order', async (t) => {
      const expect: Buffer[] = [];
      const shared: Buffer[] = [];
      const copies: Buffer[] = [];
      let accounted = '';
      const { engine, port } = await serveInline(
        {
          onTraffic(c: Conn) {
            c.next();
            const before = c.outboundBuffered;
            mixedTurn(c, shared, expect);
            for (let i = 0; i < 20; i++) mixedTurn(c, shared, expect); // many turns' worth in one
            for (const b of shared) copies.push(Buffer.from(b));
            const total = expect.reduce((a, b) => a + b.length, 0);
            // Whatever left at the mid-turn flushes counts in pendingOut; the rest is staged.
            if (c.outboundBuffered > before + total) accounted = `${c.outboundBuffered} > ${before + total}`;
            c.close();
          },
        },
        { tls: secure ? TLS : undefined, poisonViews: true },
      );
      t.after(() => engine.stop({ deadline: 1000 }));
      const s = await open(port, secure);
      const got = collect(s);
      s.write('go');
      const wire = await got;
      const want = Buffer.concat(expect);
      assert.equal(wire.length, want.length, 'byte count');
      assert.equal(sha(wire), sha(want), 'bytes in call order');
      assert.equal(accounted, '', 'outboundBuffered never above what was written');
      for (let i = 0; i < shared.length; i++)
        assert.ok(shared[i]!.equals(copies[i]!), `shared buffer ${i} left untouched (not poisoned/reused)`);
    });

    test('a slow reader: shared and staged writes over many turns arrive in order, onWritable fires, arena balances', async (t) => {
      const expect: Buffer[] = [];
      const shared: Buffer[] = [];
      let writable = 0;
      let server!: Conn;
      const { engine, port, loop } = await serveInline(
        {
          onOpen(c: Conn) {
            server = c;
          },
          onTraffic(c: Conn) {
            c.discard();
          },
          onWritable() {
            writable++;
          },
        },
        {
          tls: secure ? TLS : undefined,
          poisonViews: true,
          highWaterMark: 64 * 1024,
          lowWaterMark: 16 * 1024,
        },
      );
      t.after(() => engine.stop({ deadline: 1000 }));
      const s = await open(port, secure);
      s.pause(); // the client does not read yet
      await waitFor(() => server !== undefined, 3000, 'server side');
      const arena = (loop as unknown as { arena: { outstanding: number } }).arena;
      const out0 = arena.outstanding;
      // 1,500 turns of: a small write, a shared 16 KiB frame, a small write: 24 MiB, far past the kernel buffers.
      for (let turn = 0; turn < 1500; turn++) {
        const small = Buffer.from(`<${turn}>`);
        server.write(small);
        expect.push(small);
        const frame = randomBytes(16 * 1024);
        shared.push(frame);
        server.writeShared(frame);
        expect.push(frame);
        server.writeLatin1(`(${turn})`);
        expect.push(Buffer.from(`(${turn})`));
        if (turn % 8 === 0) await new Promise((r) => setImmediate(r));
      }
      const copies = shared.map((b) => Buffer.from(b));
      assert.ok(server.outboundBuffered > 0, 'bytes wait for the slow reader');
      assert.equal(server.whenWritable(), false, 'above the low-water mark');
      const want = Buffer.concat(expect);
      const got = collect(s, 15000);
      await sleep(50);
      s.resume();
      await waitFor(() => server.outboundBuffered === 0, 10000, 'the queue to drain');
      await waitFor(() => writable > 0, 3000, 'onWritable');
      server.close();
      const wire = await got;
      assert.equal(wire.length, want.length, 'byte count');
      assert.equal(sha(wire), sha(want), 'order kept');
      for (let i = 0; i < shared.length; i++)
        assert.ok(shared[i]!.equals(copies[i]!), `shared frame ${i} never poisoned by the arena`);
      await sleep(20);
      assert.ok(arena.outstanding <= out0, `arena outstanding ${arena.outstanding} back to ${out0}`);
    });

    test('after close and zero-length: nothing queued, nothing counted', async (t) => {
      const notes: string[] = [];
      const { engine, port } = await serveInline(
        {
          onTraffic(c: Conn) {
            c.next();
            const b0 = c.outboundBuffered;
            c.writeShared(Buffer.alloc(0));
            if (c.outboundBuffered !== b0) notes.push('zero-length counted');
            c.writeShared(Buffer.from('last'));
            c.close();
            const b1 = c.outboundBuffered;
            c.writeShared(Buffer.from('after close'));
            if (c.outboundBuffered !== b1) notes.push('after close counted');
          },
        },
        { tls: secure ? TLS : undefined },
      );
      t.after(() => engine.stop({ deadline: 1000 }));
      const s = await open(port, secure);
      const got = collect(s);
      s.write('go');
      assert.equal((await got).toString(), 'last');
      assert.deepEqual(notes, []);
    });
  });
}

describe(`writeShared of engine-lent memory (io: ${process.env.NETLOOM_IO || 'default'})`, () => {
  // write() copies a view of engine memory (the loop's read buffer, an inbound slab) because the engine
  // reuses it; writeShared keeps it by reference, so what leaves is whatever the engine put there since.
  test('writeShared(conn.next()) echoes the bytes it was given (poisonViews)', async (t) => {
    const { engine, port } = await serveInline(
      {
        onTraffic(c: Conn) {
          c.writeShared(c.next()); // "a buffer the caller will not modify again"
        },
      },
      { poisonViews: true },
    );
    t.after(() => engine.stop({ deadline: 1000 }));
    const s = await connect({ port });
    t.after(() => s.destroy());
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.write('hello, shared world');
    await waitFor(() => Buffer.concat(got).length >= 19, 3000, 'the echo');
    assert.equal(Buffer.concat(got).toString('latin1'), 'hello, shared world');
  });

  test('writeShared(conn.next()) of a 2 MiB upload echoes it byte-exact (no poison: the next read reuses the buffer)', async (t) => {
    const { engine, port } = await serveInline({
      onTraffic(c: Conn) {
        c.writeShared(c.next());
      },
      onEof(c: Conn) {
        c.close();
      },
    });
    t.after(() => engine.stop({ deadline: 1000 }));
    const s = await connect({ port });
    const payload = randomBytes(2 * 1024 * 1024);
    const got = collect(s, 10000);
    s.end(payload);
    const wire = await got;
    assert.equal(wire.length, payload.length);
    assert.equal(sha(wire), sha(payload), 'echo byte-exact');
  });

  test('control: write(conn.next()) of the same upload is byte-exact', async (t) => {
    const { engine, port } = await serveInline({
      onTraffic(c: Conn) {
        c.write(c.next());
      },
      onEof(c: Conn) {
        c.close();
      },
    });
    t.after(() => engine.stop({ deadline: 1000 }));
    const s = await connect({ port });
    const payload = randomBytes(2 * 1024 * 1024);
    const got = collect(s, 10000);
    s.end(payload);
    const wire = await got;
    assert.equal(sha(wire), sha(payload));
  });

  test('writeShared of a view of an inbound slab (a line split over two reads) echoes the line (poisonViews)', async (t) => {
    // The first half is left unconsumed, so the engine copies it into an arena slab it owns; the view
    // writeShared keeps is of that slab, which goes back to the arena (poisoned, reusable) once consumed.
    const { engine, port } = await serveInline(
      {
        onTraffic(c: Conn) {
          const i = c.peek().indexOf(0x0a);
          if (i >= 0) c.writeShared(c.next(i + 1));
        },
      },
      { poisonViews: true },
    );
    t.after(() => engine.stop({ deadline: 1000 }));
    const s = await connect({ port });
    t.after(() => s.destroy());
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    s.write('first half, ');
    await sleep(50);
    s.write('second half\n');
    await waitFor(() => Buffer.concat(got).length >= 24, 3000, 'the echo');
    assert.equal(Buffer.concat(got).toString('latin1'), 'first half, second half\n');
  });
});
