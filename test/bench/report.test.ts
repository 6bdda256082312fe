// The bench report (issue 16): results JSON in, a markdown table per comparison and an SVG chart with one
// bar group per workload out; netloom's first contender against every peer, geometric mean over scenarios.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bars, comparisons, writeReport } from '../../bench/report.ts';

const row = (median: number, ratio = 1) => ({
  median,
  min: median,
  max: median,
  ratio,
  roundRatio: ratio,
  cpuPerOp: 10,
});

test('the report draws a bar group per comparison workload and skips other result shapes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'netloom-report-'));
  const machine = { cpu: 'test cpu', cores: 2, node: 'v24' };
  writeFileSync(
    join(dir, 'http1.json'),
    JSON.stringify({
      workload: 'http1',
      date: '2026-12-01T00:00:00Z',
      machine,
      peer: 'node:http',
      seconds: 5,
      summary: {
        a: { 'netloom (1 loop)': row(200, 2), 'node:http': row(100), 'nginx <1>': row(400, 4) },
        b: { 'netloom (1 loop)': row(800, 8), 'node:http': row(100), 'nginx <1>': row(400, 4) },
      },
    }),
  );
  writeFileSync(join(dir, 'http1-parse.json'), JSON.stringify({ workload: 'http1-parse', results: [1, 2] }));
  writeFileSync(join(dir, 'suite.json'), JSON.stringify({ http1: { ms: 1, rounds: 1, seconds: 1 } }));
  const results = comparisons(dir);
  assert.deepEqual(
    results.map((r) => r.workload),
    ['http1'],
  );
  const b = bars(results[0]!);
  // Geometric means over the two scenarios: sqrt(2 * 8) = 4 against node:http, sqrt(0.5 * 2) = 1 against nginx.
  assert.deepEqual(
    b.map((x) => [x.against, Number(x.ratio.toFixed(6))]),
    [
      ['node:http', 4],
      ['nginx <1>', 1],
    ],
  );
  const paths = writeReport(dir);
  const svg = readFileSync(paths.chart, 'utf8');
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.ok(svg.includes('vs nginx &lt;1&gt;'), 'names are escaped');
  assert.ok(svg.includes('>4.00x<') && svg.includes('>1.00x<'));
  assert.equal((svg.match(/<rect x=/g) ?? []).length, 2, 'one bar per peer');
  const md = readFileSync(paths.summary, 'utf8');
  assert.ok(md.includes('| netloom (1 loop) | 800 | 8.00x | 8.00x | 10.0 |'), md);
  assert.ok(md.includes('## http1 (2026-12-01, against node:http)'));
});
