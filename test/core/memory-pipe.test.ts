// loop.pipe(): an in-memory connection whose reads arrive exactly as given, served like an accepted one.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Action, type Conn, type EventHandler, type NetloomError } from 'netloom';
import { serveInline, waitFor } from '../helpers.ts';

test('reads arrive with their sizes; writes are collected; pause holds reads until resume', async () => {
  const { engine, loop } = await serveInline({});
  try {
    const reads: string[] = [];
    let conn: Conn | null = null;
    const pipe = loop.pipe({
      onOpen(c) {
        conn = c;
        c.write('hello ');
      },
      onTraffic(c) {
        const text = c.next().toString();
        reads.push(text);
        c.write(text.toUpperCase());
        if (text === 'stop') c.pause();
      },
    });
    pipe.read(Buffer.from('ab'));
    pipe.read(Buffer.from('c'));
    pipe.read(Buffer.from('stop'));
    pipe.read(Buffer.from('later'));
    assert.deepEqual(reads, ['ab', 'c', 'stop'], 'each read is its own turn; a paused connection reads none');
    assert.equal(pipe.heldReads, 1);
    assert.equal(pipe.take().toString(), 'hello ABCSTOP');
    conn!.resume();
    pipe.pump();
    assert.deepEqual(reads, ['ab', 'c', 'stop', 'later']);
    assert.equal(pipe.take().toString(), 'LATER');
    pipe.dispose();
  } finally {
    await engine.stop();
  }
});

test('end() is the peer FIN (onEof), reset() closes with ECONNRESET, Action.Close ends the pipe', async () => {
  const { engine, loop } = await serveInline({});
  try {
    const events: string[] = [];
    const handler: EventHandler = {
      onTraffic(c) {
        c.discard();
        return Action.Close;
      },
      onEof() {
        events.push('eof');
      },
      onClose(_c, err) {
        events.push(`close ${(err as NetloomError | undefined)?.code ?? 'clean'}`);
      },
    };
    const a = loop.pipe(handler);
    a.end();
    a.reset();
    a.settle();
    const b = loop.pipe(handler);
    b.read(Buffer.from('x'));
    assert.equal(b.ended, true, 'closing after Action.Close');
    b.dispose();
    assert.deepEqual(events, ['eof', 'close ECONNRESET', 'close clean']);
    assert.equal(engine.stats().total.accepted, 0, 'pipes are not accepted connections');
  } finally {
    await engine.stop();
  }
});

test('strings of every size are written whole and exact (UTF-8 and latin1, around the copy limit)', async () => {
  const { engine, loop } = await serveInline({});
  try {
    const pipe = loop.pipe({});
    for (const n of [1, 63, 64, 65, 5000, 5462, 6000, 16383, 16384, 16385, 40_000]) {
      for (const text of ['a'.repeat(n), 'é'.repeat(n), `${'x'.repeat(n - 1)}€`, `😀${'b'.repeat(n)}`]) {
        pipe.conn.write(text);
        assert.ok(pipe.take().equals(Buffer.from(text, 'utf8')), `utf8 ${n} ${text.slice(-2)}`);
      }
      const latin = 'ÿ'.repeat(n);
      pipe.conn.writeLatin1(latin);
      assert.ok(pipe.take().equals(Buffer.from(latin, 'latin1')), `latin1 ${n}`);
    }
    pipe.dispose();
  } finally {
    await engine.stop();
  }
});

test('a FIN sent after reads held by a pause reaches the handler after them; reads are copies', async () => {
  const { engine, loop } = await serveInline({});
  try {
    const events: string[] = [];
    let conn!: Conn;
    const pipe = loop.pipe({
      onOpen(c) {
        conn = c;
        c.pause();
      },
      onTraffic(c) {
        const bytes = c.next();
        events.push(`data ${bytes.toString()}`);
        c.write(bytes); // a lent view, written back
      },
      onEof() {
        events.push('eof');
      },
    });
    const reused = Buffer.from('abc');
    pipe.read(reused);
    pipe.end();
    reused.write('zzz'); // the peer reuses its buffer: what was sent is sent
    assert.deepEqual(events, [], 'nothing while paused, not even the FIN');
    conn.resume();
    pipe.pump();
    assert.deepEqual(events, ['data abc', 'eof']);
    assert.equal(pipe.take().toString(), 'abc');
    pipe.dispose();
  } finally {
    await engine.stop();
  }
});

test('idleTimeout closes an idle pipe like an idle accepted connection', async () => {
  const { engine, loop } = await serveInline(
    {},
    { idleTimeout: 100, lingerTimeout: 50, timerResolution: 10 },
  );
  try {
    let closed: string | null = null;
    loop.pipe({
      onClose(_c, err) {
        closed = (err as NetloomError | undefined)?.code ?? 'clean';
      },
    });
    await waitFor(() => closed !== null, 2000, 'the idle close');
    assert.equal(closed, 'ERR_NETLOOM_IDLE_TIMEOUT');
  } finally {
    await engine.stop();
  }
});

test('bytes consumed outside a traffic turn give their slab back once the callback returns (idle connections hold none)', async () => {
  const { engine, loop } = await serveInline({});
  try {
    const arena = (loop as unknown as { arena: { outstanding: number } }).arena;
    const conns: Conn[] = [];
    const pipes = [];
    for (let i = 0; i < 10; i++) {
      pipes.push(
        loop.pipe({
          onOpen: (c) => {
            conns.push(c);
          },
          onTraffic() {}, // leaves everything for later (an async body reader)
        }),
      );
    }
    for (const p of pipes) p.read(Buffer.from('some bytes read later'));
    assert.equal(arena.outstanding, 10, 'each leftover is copied into a slab');
    await new Promise((r) => setImmediate(r));
    for (const c of conns) c.discard();
    assert.equal(arena.outstanding, 10, 'a view the callback took before its discard stays valid');
    await new Promise((r) => setImmediate(r));
    assert.equal(arena.outstanding, 0, 'emptied slabs went back after the callback that consumed the bytes');
    for (const p of pipes) p.dispose();
  } finally {
    await engine.stop();
  }
});

test('nothing reaches the handler after the peer FIN: later reads and ends are ignored', async () => {
  const { engine, loop } = await serveInline({});
  try {
    const events: string[] = [];
    const pipe = loop.pipe({
      onTraffic(conn) {
        events.push(`data:${conn.next().toString()}`);
      },
      onEof() {
        events.push('eof');
      },
    });
    pipe.read(Buffer.from('a'));
    pipe.end();
    pipe.read(Buffer.from('b'));
    pipe.end();
    assert.deepEqual(events, ['data:a', 'eof']);
    pipe.dispose();
  } finally {
    await engine.stop();
  }
});
