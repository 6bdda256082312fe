// Defect: when the directory is full, MetricsMemory.claim (core/metrics/memory.ts, the "cells of another
// width: given up" branch) gives a new series the oldest retired entry even when that entry's cells are of
// another width, and throws those cells away: no entry points at them any more, so neither `newCells` nor
// a later claim can ever reuse them. Under churn (routes renamed: a histogram and counters retired and made
// in a different order) the memory loses room for good, and a live set that fitted before is dropped:
// the series of the version in force count nowhere, with retired series still sitting in the memory.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMetricsMemory, defineMetric, MetricsMemory, MetricsWriter } from 'netloom';

const hist = defineMetric('review_delay_seconds', 'histogram', 'Delays.', ['route'], [0.1, 0.5]);
const ctr = defineMetric('review_bytes_total', 'counter', 'Bytes.', ['route']);

test('renames in a memory sized for the live set: retired room is reused, nothing is dropped', () => {
  // Room for two generations at once (a version draining beside the one in force): 4 entries, and two
  // histograms (2 bounds: 5 cells each) and two counters (1 cell each) = 12 cells.
  const buffer = createMetricsMemory({ rows: 1, series: 4, cells: 12 });
  const memory = new MetricsMemory(buffer);
  const w = new MetricsWriter(buffer, 0);
  let previous: string | null = null;
  for (let g = 0; g < 20; g++) {
    const route = `r${g}`;
    // Built in this order (a route's histogram, then its counter), as RouteMetrics does.
    w.series(hist, [route]).observe(0.2);
    w.series(ctr, [route]).add(1);
    if (previous !== null) {
      // The old version closes: the ledger lets go family by family (counters first here).
      const old = previous;
      w.releaseSeries(ctr, (v) => v[0] === old);
      w.releaseSeries(hist, (v) => v[0] === old);
    }
    previous = route;
    assert.equal(memory.dropped, 0, `generation ${g}: a series of the version in force was dropped`);
  }
});
