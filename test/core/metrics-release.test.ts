// Series let go (issue 16's known limit, fixed): a series no writer holds leaves the exposition; made
// again it comes back with its totals (a counter never goes back), unless a full memory gave its room to
// a new series, which then starts from zero; a share let go is carried, not lost; a restarted writer
// holds what its predecessor held; racing threads claiming and letting go in a tiny memory never drop,
// never lend one series' counts to another.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { createMetricsMemory, MetricsMemory, MetricsWriter, memorySamples, renderExposition } from 'netloom';
import { counterFamily, gaugeFamily, histogramFamily } from '../fixtures/metrics-families.ts';
import { parseExposition } from '../fixtures/prometheus.ts';

function scrape(memory: MetricsMemory): Map<string, number> {
  return parseExposition(renderExposition(memorySamples(memory)));
}

test('a full memory gives the room of a series let go to a new series, which starts at zero', () => {
  // Room for two counters only: without release the third series would be dropped.
  const buffer = createMetricsMemory({ rows: 1, series: 2, cells: 2 });
  const memory = new MetricsMemory(buffer);
  const writer = new MetricsWriter(buffer, 0);
  const a = writer.series(counterFamily, ['a']);
  const b = writer.series(counterFamily, ['b']);
  a.add(5);
  b.add(7);
  writer.publish();
  assert.equal(scrape(memory).get('test_events_total{kind="a"}'), 5);
  writer.release(counterFamily, a);
  a.add(100); // a handle kept somewhere: counted nowhere, never in another series
  const c = writer.series(counterFamily, ['c']);
  c.add(1);
  writer.publish();
  const m = scrape(memory);
  assert.equal(m.has('test_events_total{kind="a"}'), false, 'the series let go is not listed');
  assert.equal(m.get('test_events_total{kind="c"}'), 1, 'the new series starts at zero in the freed cell');
  assert.equal(m.get('test_events_total{kind="b"}'), 7);
  assert.equal(memory.dropped, 0);
  assert.equal(memory.liveSeries, 2);
  // Asked for again: a new series, from zero.
  writer.release(counterFamily, c);
  const again = writer.series(counterFamily, ['a']);
  assert.notEqual(again, a);
  again.add(2);
  writer.publish();
  assert.equal(scrape(memory).get('test_events_total{kind="a"}'), 2);
  // Letting go twice, or a handle of another family, changes nothing.
  writer.release(counterFamily, a);
  writer.release(histogramFamily, again);
  assert.equal(scrape(memory).get('test_events_total{kind="a"}'), 2);
});

test('1,000 renames in a memory of 8 series: nothing dropped, only the names in use listed', () => {
  const buffer = createMetricsMemory({ rows: 1, series: 8, cells: 64 });
  const memory = new MetricsMemory(buffer);
  const writer = new MetricsWriter(buffer, 0);
  let held: { name: string; handle: ReturnType<MetricsWriter['series']> }[] = [];
  for (let g = 0; g < 1000; g++) {
    const next = [0, 1, 2].map((i) => ({
      name: `g${g}-r${i}`,
      handle: writer.series(counterFamily, [`g${g}-r${i}`]),
    }));
    for (const h of next) h.handle.add(g);
    const hist = writer.series(histogramFamily, []);
    hist.observe(0.3);
    for (const h of held) writer.release(counterFamily, h.handle);
    held = next;
    if (g % 100 === 0) writer.publish();
  }
  writer.publish();
  assert.equal(memory.dropped, 0);
  const m = scrape(memory);
  const listed = [...m.keys()].filter((k) => k.startsWith('test_events_total'));
  assert.deepEqual(
    listed.sort(),
    ['g999-r0', 'g999-r1', 'g999-r2'].map((n) => `test_events_total{kind="${n}"}`),
  );
  for (const n of listed) assert.equal(m.get(n), 999);
  assert.equal(m.get('test_delay_seconds_count'), 1000, 'a series held throughout keeps counting');
  assert.ok(memory.usedCells <= 64);
});

test('a series two rows hold stays, with both shares, until both let go', () => {
  const buffer = createMetricsMemory({ rows: 2, series: 4, cells: 4 });
  const memory = new MetricsMemory(buffer);
  const w0 = new MetricsWriter(buffer, 0);
  const w1 = new MetricsWriter(buffer, 1);
  const s0 = w0.series(counterFamily, ['x']);
  const s1 = w1.series(counterFamily, ['x']);
  s0.add(3);
  s1.add(4);
  w0.publish();
  w1.publish();
  assert.equal(scrape(memory).get('test_events_total{kind="x"}'), 7);
  w0.release(counterFamily, s0);
  s0.add(100); // after the release: counted nowhere
  assert.equal(scrape(memory).get('test_events_total{kind="x"}'), 7, "row 0's share is carried");
  const y = w0.series(counterFamily, ['y']);
  y.add(1);
  w0.publish();
  assert.equal(scrape(memory).get('test_events_total{kind="y"}'), 1);
  w1.release(counterFamily, s1);
  assert.equal(scrape(memory).has('test_events_total{kind="x"}'), false);
  // Made again while the memory has room: back with its totals, and on from there.
  w1.series(counterFamily, ['x']).add(1);
  w1.publish();
  assert.equal(scrape(memory).get('test_events_total{kind="x"}'), 8);
});

test("a gauge's share goes with its hold; a histogram's is carried whole", () => {
  const buffer = createMetricsMemory({ rows: 2 });
  const memory = new MetricsMemory(buffer);
  const w0 = new MetricsWriter(buffer, 0);
  const w1 = new MetricsWriter(buffer, 1);
  const g0 = w0.series(gaugeFamily, ['pool']);
  const g1 = w1.series(gaugeFamily, ['pool']);
  g0.set(3);
  g1.set(4);
  const h0 = w0.series(histogramFamily, []);
  h0.observe(0.2);
  h0.observe(0.7);
  w0.publish();
  w1.publish();
  assert.equal(scrape(memory).get('test_open{kind="pool"}'), 7);
  // Not published yet: the release still carries it (the writer's own copy is what moves).
  h0.observe(0.05);
  w0.release(gaugeFamily, g0);
  w0.release(histogramFamily, h0);
  const m = scrape(memory);
  assert.equal(m.get('test_open{kind="pool"}'), 4);
  assert.equal(m.has('test_delay_seconds_count'), false, 'retired');
  w1.series(histogramFamily, []).observe(0.3);
  w1.publish();
  const back = scrape(memory);
  assert.equal(back.get('test_delay_seconds_count'), 4);
  assert.equal(back.get('test_delay_seconds_bucket{le="0.1"}'), 1);
  assert.equal(back.get('test_delay_seconds_bucket{le="0.25"}'), 2);
  assert.equal(back.get('test_delay_seconds_bucket{le="0.5"}'), 3);
  assert.ok(Math.abs(back.get('test_delay_seconds_sum')! - 1.25) < 1e-9);
});

test('a full memory reclaims the oldest retired series first; what it reclaims starts clean', () => {
  const buffer = createMetricsMemory({ rows: 2, series: 4, cells: 4 });
  const memory = new MetricsMemory(buffer);
  const w0 = new MetricsWriter(buffer, 0);
  const w1 = new MetricsWriter(buffer, 1);
  for (const [i, name] of ['a', 'b', 'c', 'd'].entries()) {
    w0.series(counterFamily, [name]).add(10 + i);
    w1.series(counterFamily, [name]).add(20 + i);
  }
  w0.publish();
  w1.publish();
  // Retired in the order a, b, c (d stays held by row 1).
  for (const name of ['a', 'b', 'c']) {
    w0.releaseSeries(counterFamily, (v) => v[0] === name);
    w1.releaseSeries(counterFamily, (v) => v[0] === name);
  }
  w0.releaseSeries(counterFamily, (v) => v[0] === 'd');
  // Two new series take the room of a and b (the oldest); c is made again and comes back whole.
  const e = w0.series(counterFamily, ['e']);
  const f = w1.series(counterFamily, ['f']);
  w0.series(counterFamily, ['c']).add(1);
  e.add(1);
  f.add(2);
  w0.publish();
  w1.publish();
  const m = scrape(memory);
  assert.equal(m.get('test_events_total{kind="e"}'), 1, 'reclaimed cells start from zero');
  assert.equal(m.get('test_events_total{kind="f"}'), 2);
  assert.equal(m.get('test_events_total{kind="c"}'), 12 + 22 + 1, 'c came back with its totals');
  assert.equal(m.get('test_events_total{kind="d"}'), 13 + 23, "d keeps row 0's carried share");
  assert.equal(m.has('test_events_total{kind="a"}'), false);
  assert.equal(memory.dropped, 0);
  // a made again: its room went to e or f, so it starts from zero.
  w1.releaseSeries(counterFamily, (v) => v[0] === 'f');
  w1.series(counterFamily, ['a']).add(5);
  w1.publish();
  assert.equal(scrape(memory).get('test_events_total{kind="a"}'), 5);
});

test("a restarted writer holds its predecessor's series: it continues them, and can let them go by label", () => {
  const buffer = createMetricsMemory({ rows: 2, series: 8, cells: 32 });
  const memory = new MetricsMemory(buffer);
  const first = new MetricsWriter(buffer, 0);
  first.series(counterFamily, ['kept']).add(10);
  first.series(counterFamily, ['gone']).add(20);
  first.series(histogramFamily, []).observe(0.2);
  first.publish();
  // The loop crashed: the engine settles its row, and a new writer takes it.
  memory.settleRow(0);
  const second = new MetricsWriter(buffer, 0);
  second.series(counterFamily, ['kept']).add(1);
  second.publish();
  assert.equal(scrape(memory).get('test_events_total{kind="kept"}'), 11);
  assert.equal(scrape(memory).get('test_events_total{kind="gone"}'), 20, 'held until let go');
  // What the predecessor held for a name no longer in use is let go by label, without a handle.
  const n = second.releaseSeries(counterFamily, (v) => v[0] === 'gone');
  assert.equal(
    second.releaseSeries(counterFamily, (v) => v[0] === 'gone'),
    0,
    'let go once',
  );
  assert.equal(n, 1);
  const m = scrape(memory);
  assert.equal(m.has('test_events_total{kind="gone"}'), false);
  assert.equal(m.get('test_events_total{kind="kept"}'), 11);
  assert.equal(m.get('test_delay_seconds_count'), 1);
  // A loop that is not restarted lets go of what it held: its counters' shares carried, so a series the
  // live row still holds never goes back, and one only it held is retired.
  const other = new MetricsWriter(buffer, 1);
  other.series(counterFamily, ['kept']).add(5);
  other.series(counterFamily, ['only-row-1']).add(5);
  other.publish();
  memory.settleRow(1);
  memory.releaseRow(1);
  const after = scrape(memory);
  assert.equal(after.get('test_events_total{kind="kept"}'), 16);
  assert.equal(after.has('test_events_total{kind="only-row-1"}'), false);
  second.series(counterFamily, ['kept']).add(1);
  second.publish();
  assert.equal(scrape(memory).get('test_events_total{kind="kept"}'), 17);
});

test('two threads claiming and letting go in a memory of 16 series: exact totals, nothing dropped', async () => {
  const buffer = createMetricsMemory({ rows: 2, series: 16, cells: 64 });
  const memory = new MetricsMemory(buffer);
  const rounds = 20_000;
  const workers = [0, 1].map(
    (row) =>
      new Worker(new URL('../fixtures/metrics-churn.ts', import.meta.url), {
        workerData: { memory: buffer, row, rounds },
      }),
  );
  const exited = Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve, reject) => {
          w.once('error', reject);
          w.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exit ${code}`))));
        }),
    ),
  );
  let done = false;
  void exited.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  // Scrapes racing the churn: a series' value is never another's (own names only ever count 7).
  let scrapes = 0;
  while (!done) {
    for (const s of memorySamples(memory))
      if (s.family.name === counterFamily.name && s.values[0]!.startsWith('row-'))
        assert.ok(s.value === 0 || s.value === 7, `${s.values[0]} read ${s.value}`);
    scrapes++;
    await new Promise((r) => setImmediate(r));
  }
  await exited;
  assert.equal(memory.dropped, 0);
  const m = scrape(memory);
  assert.equal(m.get('test_events_total{kind="stable"}'), 2 * rounds);
  const left = [...m.keys()].filter((k) => k.startsWith('test_events_total') && !k.includes('stable'));
  assert.deepEqual(left, [], 'every churned series was let go');
  assert.ok(scrapes > 0);
});
