// The log ring and its shipper: concurrent producers through a small ring (no torn or reordered record, exact
// accounting, thousands of wrap-arounds), files that decompress back to what was sent, rotation, a stalled
// sink, shutdown under load, sampling, network sinks, and the engine and HTTP access-log integration.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { gunzipSync, zstdDecompressSync } from 'node:zlib';
import { type LogStats, RingLogger, RingMemory, serve, startLogShipper } from 'netloom';
import { server } from 'netloom/http1';
import { waitFor } from '../helpers.ts';

const fixture = (name: string) => new URL(`../fixtures/${name}`, import.meta.url).href;
const scratch = () => mkdtempSync(join(tmpdir(), 'netloom-log-'));

function assertAccounted(s: LogStats): void {
  const dropped = s.dropped.full + s.dropped.tooLarge + s.dropped.sink + s.dropped.abandoned;
  assert.equal(
    s.written,
    s.shipped + dropped + s.sampledOut,
    `written ${s.written} != shipped ${s.shipped} + dropped ${dropped} + sampled ${s.sampledOut}`,
  );
}

/** Node's zstd decoder stops after one frame: decode a file of concatenated frames frame by frame. */
function zstdFrames(data: Buffer): Buffer {
  const magic = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
  const starts: number[] = [];
  for (let i = data.indexOf(magic); i !== -1; i = data.indexOf(magic, i + 1)) starts.push(i);
  starts.push(data.length);
  const out: Buffer[] = [];
  let from = starts[0]!;
  for (let k = 1; k < starts.length; k++) {
    try {
      out.push(zstdDecompressSync(data.subarray(from, starts[k])));
      from = starts[k]!;
    } catch {
      // The magic number appeared inside a frame: extend to the next candidate.
    }
  }
  return Buffer.concat(out);
}

function readNdjson(file: string, decode: (b: Buffer) => Buffer = (b) => b): Record<string, unknown>[] {
  const text = decode(readFileSync(file)).toString('utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('ring', () => {
  test('4 producer threads x 1M records through a 16 KiB ring: intact, in order, exactly accounted', async () => {
    const dir = scratch();
    const resultFile = join(dir, 'verify.json');
    const shipper = await startLogShipper({
      capacity: 16 * 1024,
      sink: { type: 'module', module: fixture('verify-sink.ts'), options: { resultFile } },
      compression: 'none',
      batch: { maxRecords: 512, maxDelay: 20 },
    });
    const producers = [1, 2, 3, 4].map(
      (seed) =>
        new Worker(new URL('../fixtures/log-producer.ts', import.meta.url), {
          workerData: { ring: shipper.ring, count: 1_000_000, seed, maxFiller: 300 },
        }),
    );
    await Promise.all(producers.map((w) => new Promise((r) => w.once('exit', r))));
    const stats = await shipper.stop();
    const result = JSON.parse(readFileSync(resultFile, 'utf8')) as {
      records: number;
      problems: string[];
      droppedReported: number;
    };
    assert.deepEqual(result.problems, [], 'no torn, unparsable or reordered record');
    assert.equal(stats.written, 4_000_000);
    assertAccounted(stats);
    assert.equal(result.records, stats.shipped, 'the sink saw exactly the shipped records');
    assert.equal(stats.dropped.sink, 0);
    assert.ok(stats.dropped.full > 0, 'the small ring filled: drops happened and were counted');
    assert.ok(result.droppedReported > 0, 'drops were reported downstream as records of their own');
    const laps = stats.bytesRaw / (16 * 1024);
    assert.ok(laps > 1000, `wrap-around exercised ${Math.round(laps)} times`);
  });

  test('a record larger than half the ring is dropped as too large, not written', async () => {
    const shipper = await startLogShipper({
      capacity: 4096,
      sink: { type: 'module', module: fixture('stall-sink.ts') },
    });
    const log = shipper.logger();
    log.info('x'.repeat(3000)); // over half of a 4 KiB ring: it could never fit
    const stats = await shipper.stop(100);
    assert.equal(stats.dropped.tooLarge, 1);
    assert.equal(stats.dropped.full, 0);
    assertAccounted(stats);
    const big = await startLogShipper({
      capacity: 4096,
      sink: { type: 'file', path: join(scratch(), 'a.log') },
    });
    big.logger().info('y', { blob: 'z'.repeat(2 * 1024 * 1024) });
    const s2 = await big.stop();
    assert.equal(s2.dropped.tooLarge, 1);
    assertAccounted(s2);
  });

  test('a loop restarted many times keeps its producer id; claimed ids are bounded and say so', () => {
    const ring = RingMemory.create(4096);
    for (let i = 0; i < 200; i++) assert.equal(new RingLogger(ring, 3, true).producer, 3);
    const claimed = Array.from({ length: 32 }, () => new RingLogger(ring, -1).producer);
    assert.deepEqual(
      claimed,
      Array.from({ length: 32 }, (_, i) => 32 + i),
    );
    assert.throws(() => new RingLogger(ring, -1), RangeError);
  });

  test('ring capacity must be a power of two', () => {
    assert.throws(() => RingMemory.create(5000), RangeError);
    assert.throws(() => RingMemory.create(1024), RangeError);
  });
});

describe('shipping', () => {
  for (const compression of ['gzip', 'zstd', 'none'] as const) {
    test(`file sink with ${compression}: the file decodes back to the records sent`, async () => {
      const path = join(scratch(), 'app.log');
      const shipper = await startLogShipper({
        sink: { type: 'file', path },
        compression,
        batch: { maxRecords: 100 },
      });
      const log = shipper.logger(7);
      for (let i = 0; i < 1000; i++) log.info('event', { i, text: `caf\u00e9 ${i}` });
      log.error('boom', { err: new Error('bad thing') });
      log.access({ method: 'GET', path: '/a', status: 503, bytes: 0, duration: 1.5, remote: '::1' });
      const stats = await shipper.stop();
      const decode =
        compression === 'gzip' ? gunzipSync : compression === 'zstd' ? zstdFrames : (b: Buffer) => b;
      const records = readNdjson(path, decode);
      assert.equal(records.length, 1002);
      assert.deepEqual(
        records.slice(0, 1000).map((r) => [r.i, r.text, r.level, r.loop, r.kind, r.msg]),
        Array.from({ length: 1000 }, (_, i) => [i, `caf\u00e9 ${i}`, 'info', 7, 'log', 'event']),
      );
      assert.equal((records[1000]!.err as { message: string }).message, 'bad thing');
      assert.deepEqual(
        [records[1001]!.kind, records[1001]!.status, records[1001]!.level],
        ['access', 503, 'error'],
      );
      assert.equal(stats.shipped, 1002);
      assertAccounted(stats);
      if (compression !== 'none') assert.ok(stats.compressionRatio > 3, `ratio ${stats.compressionRatio}`);
    });
  }

  test('file rotation by size keeps the newest `keep` files and loses no record', async () => {
    const dir = scratch();
    const path = join(dir, 'rot.log');
    const shipper = await startLogShipper({
      sink: { type: 'file', path, maxBytes: 8 * 1024, keep: 3 },
      compression: 'none',
      batch: { maxRecords: 20 },
    });
    const log = shipper.logger();
    for (let i = 0; i < 2000; i++) log.info('line', { i, pad: 'p'.repeat(40) });
    const stats = await shipper.stop();
    const rotated = readdirSync(dir)
      .filter((f) => f.startsWith('rot.log.'))
      .sort();
    assert.equal(rotated.length, 3, `rotated files: ${rotated}`);
    for (const f of [...rotated, 'rot.log']) assert.ok(readFileSync(join(dir, f)).length <= 8 * 1024 + 4096);
    // The kept files plus the live one hold the newest records, contiguous, ending with the last.
    const kept = [...rotated.map((f) => join(dir, f)), path]
      .flatMap((f) => readNdjson(f))
      .map((r) => r.i as number);
    assert.equal(kept.at(-1), 1999);
    for (const [k, v] of kept.entries()) assert.equal(v, kept[0]! + k);
    assert.equal(stats.shipped, 2000);
  });

  test('a stalled sink: producers stay fast, drops are counted, memory stays bounded', async () => {
    const shipper = await startLogShipper({
      capacity: 64 * 1024,
      sink: { type: 'module', module: fixture('stall-sink.ts') },
      maxPending: 2,
      batch: { maxRecords: 50 },
    });
    const log = shipper.logger();
    const rss = process.memoryUsage().rss;
    const times: number[] = [];
    for (let i = 0; i < 200_000; i++) {
      const t = performance.now();
      log.info('stalled', { i, pad: 'x'.repeat(64) });
      if (i % 100 === 0) times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const p99 = times[Math.floor(times.length * 0.99)]!;
    assert.ok(p99 < 0.05, `producer p99 ${p99} ms`);
    const grew = process.memoryUsage().rss - rss;
    assert.ok(grew < 64 * 1024 * 1024, `rss grew ${grew} bytes`);
    const stats = await shipper.stop(300);
    assert.ok(stats.dropped.full > 150_000, `dropped ${stats.dropped.full}`);
    assert.ok(stats.dropped.sink > 0, 'what the stalled sink held at the deadline is counted as lost');
    assertAccounted(stats);
  });

  test('shutdown under load ships every committed record', async () => {
    const path = join(scratch(), 'load.log');
    const shipper = await startLogShipper({
      capacity: 1 << 20,
      sink: { type: 'file', path },
      compression: 'none',
    });
    const producer = new Worker(new URL('../fixtures/log-producer.ts', import.meta.url), {
      workerData: { ring: shipper.ring, count: 300_000, seed: 9, maxFiller: 60 },
    });
    await new Promise((r) => producer.once('exit', r));
    const stats = await shipper.stop();
    assert.equal(
      stats.consumed,
      stats.committed +
        (stats.dropped.full > 0 ? readNdjson(path).filter((r) => r.kind === 'drops').length : 0),
    );
    assert.equal(stats.shipped, stats.committed, 'every committed record reached the file');
    assert.equal(readNdjson(path).filter((r) => r.kind === 'log').length, stats.committed);
    assertAccounted(stats);
  });

  test('http sink: batches POSTed gzip; a dead endpoint is retried, then dropped and counted', async () => {
    const received: Record<string, unknown>[] = [];
    let failNext = 2;
    const srv = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => {
        if (failNext-- > 0) {
          res.writeHead(503).end();
          return;
        }
        assert.equal(req.headers['content-encoding'], 'gzip');
        for (const l of gunzipSync(Buffer.concat(chunks)).toString().split('\n').filter(Boolean))
          received.push(JSON.parse(l));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}/logs`;
    const shipper = await startLogShipper({
      sink: { type: 'http', url, retries: 3, backoff: 10 },
      compression: 'gzip',
      batch: { maxRecords: 10 },
    });
    const log = shipper.logger();
    for (let i = 0; i < 50; i++) log.info('h', { i });
    await waitFor(() => received.length === 50, 5000, 'the batches, after two refusals');
    srv.close();
    for (let i = 0; i < 30; i++) log.info('lost', { i });
    const stats = await shipper.stop(5000);
    assert.equal(stats.shipped, 50);
    assert.equal(stats.dropped.sink, 30);
    assertAccounted(stats);
  });

  test('tcp sink: NDJSON over one connection', async () => {
    const got: Buffer[] = [];
    const srv = net.createServer((s) => s.on('data', (d: Buffer) => got.push(d)));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    const shipper = await startLogShipper({
      sink: { type: 'tcp', host: '127.0.0.1', port },
      compression: 'none',
    });
    const log = shipper.logger();
    for (let i = 0; i < 100; i++) log.warn('t', { i });
    const stats = await shipper.stop();
    await waitFor(() => Buffer.concat(got).toString().split('\n').filter(Boolean).length === 100);
    srv.close();
    assert.equal(stats.shipped, 100);
  });
});

describe('sampling', () => {
  test('rates per level and kind; errors and 5xx always kept; keyed sampling is deterministic', async () => {
    const path = join(scratch(), 's.log');
    const shipper = await startLogShipper({
      sink: { type: 'file', path },
      compression: 'none',
      sampling: { levels: { info: 0.25 }, kinds: { access: 0.1 }, level: 'info' },
    });
    const log = shipper.logger();
    for (let i = 0; i < 4000; i++) log.info('i', { i });
    for (let i = 0; i < 100; i++) log.debug('below the level');
    for (let i = 0; i < 100; i++) log.error('always', { i });
    for (let i = 0; i < 200; i++) {
      log.access({ method: 'GET', path: '/', status: 502, bytes: 0, duration: 1, remote: 'x' });
    }
    for (let u = 0; u < 200; u++) {
      for (let k = 0; k < 5; k++) {
        log.access(
          { method: 'GET', path: `/u/${u}`, status: 200, bytes: 1, duration: 1, remote: 'x' },
          `user-${u}`,
        );
      }
    }
    const stats = await shipper.stop();
    const records = readNdjson(path);
    const infos = records.filter((r) => r.msg === 'i').length;
    assert.ok(infos > 800 && infos < 1200, `info kept ${infos} of 4000 at 25%`);
    assert.equal(records.filter((r) => r.msg === 'below the level').length, 0);
    assert.equal(records.filter((r) => r.msg === 'always').length, 100);
    assert.equal(records.filter((r) => r.status === 502).length, 200, '5xx always kept');
    const perUser = new Map<string, number>();
    for (const r of records)
      if (r.status === 200) perUser.set(r.path as string, (perUser.get(r.path as string) ?? 0) + 1);
    assert.ok(perUser.size > 5 && perUser.size < 50, `${perUser.size} of 200 users sampled in at 10%`);
    for (const [user, n] of perUser) assert.equal(n, 5, `${user}: all or nothing`);
    assertAccounted(stats);
  });
});

describe('engine integration', () => {
  test('loops log into the ring; the HTTP codec writes access records', async () => {
    const path = join(scratch(), 'access.log');
    const shipper = await startLogShipper({ sink: { type: 'file', path }, compression: 'gzip' });
    const engine = await serve(
      server(
        (req, res) => {
          if (req.path === '/fail') return res.status(500).end('x');
          res.end('hello');
        },
        { accessLog: true },
      ),
      { loops: 1, logRing: shipper.ring },
    );
    const url = `http://127.0.0.1:${engine.port}`;
    await fetch(`${url}/a?x=1`, {
      headers: { traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`, 'x-request-id': 'r-1' },
    });
    await fetch(`${url}/fail`);
    await engine.stop();
    const stats = await shipper.stop();
    const records = readNdjson(path, gunzipSync);
    const access = records.filter((r) => r.kind === 'access');
    assert.equal(access.length, 2);
    assert.deepEqual(
      [
        access[0]!.method,
        access[0]!.path,
        access[0]!.status,
        access[0]!.bytes,
        access[0]!.traceId,
        access[0]!.requestId,
        access[0]!.level,
      ],
      ['GET', '/a', 200, 5, 'a'.repeat(32), 'r-1', 'info'],
    );
    assert.equal(typeof access[0]!.duration, 'number');
    assert.equal(access[1]!.level, 'error');
    assertAccounted(stats);
  });
});

describe('records a producer never publishes', () => {
  /** Makes the next commit on `ring` throw, as if the producer died between reserving and publishing. */
  function dieAtNextCommit(ring: RingMemory): void {
    const commit = ring.commit;
    ring.commit = () => {
      ring.commit = commit;
      throw new Error('producer died mid-write');
    };
  }

  test("a restarted loop's predecessor's unpublished record is skipped, counted, and what follows is shipped", async () => {
    const path = join(scratch(), 'abandoned.log');
    const shipper = await startLogShipper({
      capacity: 64 * 1024,
      sink: { type: 'file', path },
      compression: 'none',
    });
    try {
      const first = new RingLogger(shipper.ring, 3, true); // loop 3
      first.info('before');
      dieAtNextCommit(first.ring);
      assert.throws(() => first.info('lost'));
      // The engine restarts loop 3: the same producer id, the next epoch.
      const second = new RingLogger(shipper.ring, 3, true);
      for (let i = 0; i < 10; i++) second.info('after', { i });
      await waitFor(() => shipper.stats().shipped === 11, 3000, 'the records behind the dead one');
      const stats = await shipper.stop(1000);
      assert.equal(stats.dropped.abandoned, 1);
      assertAccounted(stats);
      const lines = readNdjson(path).filter((r) => r.kind === 'log');
      assert.deepEqual(
        lines.map((r) => r.msg),
        ['before', ...Array.from({ length: 10 }, () => 'after')],
      );
      assert.ok(lines.every((r) => r.loop === 3));
    } finally {
      await shipper.stop(100);
    }
  });

  test('at shutdown a record left unpublished by a live producer is skipped and counted; the rest ships', async () => {
    const path = join(scratch(), 'stuck.log');
    const shipper = await startLogShipper({
      capacity: 64 * 1024,
      sink: { type: 'file', path },
      compression: 'none',
    });
    const log = shipper.logger();
    dieAtNextCommit(log.ring);
    assert.throws(() => log.info('stuck'));
    for (let i = 0; i < 5; i++) log.info('behind', { i });
    const started = Date.now();
    const stats = await shipper.stop(3000);
    assert.ok(Date.now() - started < 2500, 'the stop did not wait for its whole deadline');
    assert.equal(stats.dropped.abandoned, 1);
    assert.equal(stats.shipped, 5);
    assertAccounted(stats);
    const lines = readNdjson(path).filter((r) => r.kind === 'log');
    assert.equal(lines.length, 5);
    assert.ok(
      lines.every((r) => r.loop === 'main'),
      'main-thread records say so (not 4294967295)',
    );
  });
});

describe('file sinks and logrotate', () => {
  const lines = (path: string) =>
    readNdjson(path)
      .filter((r) => r.kind === 'log')
      .map((r) => r.msg as string);

  test('move-then-signal: after the file is moved and reopen() is called, new records go to a new file', async () => {
    const dir = scratch();
    const path = join(dir, 'app.log');
    const shipper = await startLogShipper({
      sink: { type: 'file', path },
      compression: 'none',
      batch: { maxDelay: 10 },
    });
    const log = shipper.logger();
    log.info('one');
    await waitFor(() => shipper.stats().shipped === 1, 2000, 'the first record');
    renameSync(path, `${path}.1`); // logrotate's move
    shipper.reopen(); // its postrotate signal
    await new Promise((r) => setTimeout(r, 50));
    log.info('two');
    await shipper.stop();
    assert.deepEqual(lines(`${path}.1`), ['one']);
    assert.deepEqual(lines(path), ['two']);
  });

  test('a file moved away without a signal is noticed and a new one opened', async () => {
    const dir = scratch();
    const path = join(dir, 'app.log');
    const shipper = await startLogShipper({
      sink: { type: 'file', path },
      compression: 'none',
      batch: { maxDelay: 10 },
    });
    const log = shipper.logger();
    log.info('one');
    await waitFor(() => shipper.stats().shipped === 1, 2000, 'the first record');
    renameSync(path, `${path}.moved`);
    await new Promise((r) => setTimeout(r, 1200)); // past the sink's move check
    log.info('two');
    await shipper.stop();
    assert.deepEqual(lines(`${path}.moved`), ['one']);
    assert.deepEqual(lines(path), ['two']);
  });

  test('a rotation whose rename fails (the file was deleted) keeps writing instead of failing for good', async () => {
    const dir = scratch();
    const path = join(dir, 'rot.log');
    const shipper = await startLogShipper({
      sink: { type: 'file', path, maxBytes: 600 },
      compression: 'none',
      batch: { maxDelay: 10, maxRecords: 1 },
    });
    const log = shipper.logger();
    log.info('first', { pad: 'x'.repeat(400) });
    await waitFor(() => shipper.stats().shipped === 1, 2000, 'the first record');
    unlinkSync(path); // deleted under the sink; the next batch passes maxBytes and rotates
    for (let i = 0; i < 5; i++) log.info('later', { i, pad: 'y'.repeat(200) });
    const stats = await shipper.stop();
    assert.equal(stats.sinkErrors, 0);
    assert.equal(stats.shipped, 6);
    const kept = readdirSync(dir).flatMap((f) => lines(join(dir, f)));
    assert.equal(kept.filter((m) => m === 'later').length, 5, 'every later record is on disk');
  });
});
