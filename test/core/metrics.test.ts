// Metrics in shared memory (issue 16): series every loop updates in place, read by any thread without a
// message; consistent rows under concurrent publishes; bounded (a full memory drops and counts, never
// throws); the Prometheus text checked by Debian's promtool and by a parser of our own.
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import {
  createMetricsMemory,
  defineMetric,
  MetricsMemory,
  MetricsWriter,
  memorySamples,
  renderExposition,
  serve,
} from 'netloom';
import { counterFamily, histogramFamily, messageBytes, messages } from '../fixtures/metrics-families.ts';
import { parseExposition, promtool } from '../fixtures/prometheus.ts';

describe('metrics memory', () => {
  test('two writer threads racing a reader: every scrape is consistent, the totals exact', async () => {
    const buffer = createMetricsMemory({ rows: 2 });
    const memory = new MetricsMemory(buffer);
    const count = 300_000;
    const workers = [0, 1].map(
      (row) =>
        new Worker(new URL('../fixtures/metrics-writer.ts', import.meta.url), {
          workerData: { memory: buffer, row, count },
        }),
    );
    const exited = Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
    let done = false;
    void exited.then(() => {
      done = true;
    });
    let last = 0;
    let scrapes = 0;
    while (!done) {
      const samples = memorySamples(memory);
      const shared = samples.find((s) => s.family.name === counterFamily.name && s.values[0] === 'shared');
      const histogram = samples.find((s) => s.family.name === histogramFamily.name);
      if (shared !== undefined && histogram !== undefined) {
        const v = shared.value as number;
        assert.ok(v >= last, `a counter went back: ${last} -> ${v}`);
        last = v;
        // One row's histogram is copied whole: its buckets always add up to its count.
        const cells = histogram.value as Float64Array;
        const buckets = cells[0]! + cells[1]! + cells[2]! + cells[3]!;
        assert.equal(buckets, cells[5], 'buckets and count from the same publish');
        scrapes++;
      }
      await new Promise((r) => setImmediate(r));
    }
    const text = renderExposition(memorySamples(memory));
    const parsed = parseExposition(text);
    assert.equal(parsed.get('test_events_total{kind="shared"}'), 2 * count);
    assert.equal(parsed.get('test_events_total{kind="row-0"}'), 2 * count);
    assert.equal(parsed.get('test_events_total{kind="row-1"}'), 2 * count);
    assert.equal(parsed.get('test_delay_seconds_count'), 2 * count);
    assert.equal(parsed.get('test_delay_seconds_bucket{le="+Inf"}'), 2 * count);
    // (i % 7) / 10 for i = 1..count: values 0 and 0.1 fall in the first bucket (le 0.1).
    const perSeven = Math.floor(count / 7);
    assert.ok(Math.abs(parsed.get('test_delay_seconds_bucket{le="0.1"}')! - 2 * 2 * perSeven) <= 4);
    assert.ok(scrapes > 0);
    assert.equal(promtool(text).status, 0, promtool(text).output);
  });

  test('a full memory drops series and counts them; updates never throw', () => {
    const buffer = createMetricsMemory({ rows: 1, series: 4, cells: 8 });
    const writer = new MetricsWriter(buffer, 0);
    const handles = Array.from({ length: 10 }, (_, i) => writer.series(counterFamily, [`k${i}`]));
    for (const h of handles) h.add(5);
    // A histogram of 3 bounds takes 6 cells: it does not fit beside four counters in 8 cells.
    const h = writer.series(histogramFamily, []);
    h.observe(0.2);
    writer.publish();
    const memory = new MetricsMemory(buffer);
    const samples = memorySamples(memory);
    assert.ok(samples.length <= 4, `${samples.length} series kept`);
    for (const s of samples) assert.equal(s.value, 5);
    assert.ok(memory.dropped >= 6, `dropped ${memory.dropped}`);
    // The same handle again: made once.
    assert.equal(writer.series(counterFamily, ['k0']), handles[0]);
  });

  test('label values are escaped; names and definitions are checked where they are made', () => {
    const buffer = createMetricsMemory({ rows: 1 });
    const writer = new MetricsWriter(buffer, 0);
    writer.series(counterFamily, ['quote " backslash \\ newline \n end']).add(3);
    writer.publish();
    const text = renderExposition(memorySamples(new MetricsMemory(buffer)));
    assert.ok(text.includes('test_events_total{kind="quote \\" backslash \\\\ newline \\n end"} 3'), text);
    assert.equal(promtool(text).status, 0, promtool(text).output);
    assert.throws(() => defineMetric('bad-name', 'counter', 'x'), TypeError);
    assert.throws(() => defineMetric('ok_total', 'counter', 'x', ['__reserved']), TypeError);
    assert.throws(() => defineMetric('h_seconds', 'histogram', 'x', ['le'], [1]), TypeError);
    assert.throws(() => defineMetric('h_seconds', 'histogram', 'x', [], [2, 1]), TypeError);
    assert.throws(() => defineMetric('c_total', 'counter', 'x', [], [1]), TypeError);
    assert.throws(() => writer.series(counterFamily, []), TypeError, 'a label value missing');
    assert.throws(() => writer.series(counterFamily, ['a\u0000b']), TypeError);
    const other = defineMetric('test_events_total', 'gauge', 'Another definition.', ['kind']);
    assert.throws(() => writer.series(other, ['x']), /already defined differently/);
    assert.throws(() => new MetricsWriter(buffer, 1), RangeError);
    assert.throws(() => new MetricsMemory(new SharedArrayBuffer(1024)), TypeError);
  });
});

describe('engine metrics', () => {
  test("engine.metrics() sums the loops' own series and the engine's counters over 2 loops", async () => {
    const engine = await serve(new URL('../fixtures/metrics-echo.ts', import.meta.url), { loops: 2 });
    try {
      const clients = 40;
      await Promise.all(
        Array.from(
          { length: clients },
          () =>
            new Promise<void>((resolve, reject) => {
              const s = net.connect(engine.port, '127.0.0.1');
              s.on('error', reject);
              s.once('connect', () => s.write('x'.repeat(50)));
              s.once('data', () => {
                s.end();
                resolve();
              });
            }),
        ),
      );
      let parsed = new Map<string, number>();
      for (let i = 0; i < 100; i++) {
        parsed = parseExposition(engine.metrics());
        let closed = 0;
        for (const [k, v] of parsed) if (k.startsWith('netloom_connections_closed_total')) closed += v;
        if (closed === clients) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const sum = (prefix: string) => {
        let n = 0;
        for (const [k, v] of parsed) if (k.startsWith(prefix)) n += v;
        return n;
      };
      assert.equal(sum(`${messages.name}{`), clients, 'every echo counted once, over the loops');
      assert.equal(parsed.get(`${messageBytes.name}_bucket{le="100"}`), clients);
      assert.equal(parsed.get(`${messageBytes.name}_sum`), clients * 50);
      assert.equal(sum('netloom_connections_accepted_total{'), clients);
      assert.equal(sum('netloom_connections_closed_total{'), clients);
      assert.equal(sum('netloom_received_bytes_total{'), clients * 50);
      assert.equal(parsed.get(`netloom_connections_open{listener="${engine.address}",loop="1"}`), 0);
      const text = engine.metrics();
      const check = promtool(text);
      assert.equal(check.status, 0, check.output);
    } finally {
      await engine.stop();
    }
  });
});
