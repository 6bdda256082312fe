// Turns bench/results/*.json into bench/results/summary.md (every comparison's table) and
// bench/results/chart.svg (netloom's throughput against each peer, one bar group per workload).
// Run by `npm run bench` after the suite; `node --conditions=netloom-source bench/report.ts` redraws.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_DIR } from './harness.ts';

interface Row {
  median: number;
  ratio: number;
  roundRatio: number;
  cpuPerOp: number;
}

interface ComparisonResult {
  workload: string;
  date: string;
  machine: { cpu: string; cores: number; node: string };
  peer: string;
  seconds: number;
  summary: Record<string, Record<string, Row>>;
}

const RESULTS = join(BENCH_DIR, 'results');

/** The results of workloads that compared contenders (microbenchmarks and RSS runs have other shapes). */
export function comparisons(dir = RESULTS): ComparisonResult[] {
  if (!existsSync(dir)) return [];
  const out: ComparisonResult[] = [];
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith('.json') || f === 'suite.json') continue;
    const r = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Partial<ComparisonResult>;
    if (typeof r.peer !== 'string' || r.summary === undefined) continue;
    const rows = Object.values(r.summary);
    if (rows.length === 0 || !rows.every((s) => Object.values(s).every((x) => typeof x?.median === 'number')))
      continue;
    out.push(r as ComparisonResult);
  }
  return out;
}

/** netloom's first contender against every other one, the geometric mean over the workload's scenarios. */
export function bars(r: ComparisonResult): { against: string; ratio: number }[] {
  const scenarios = Object.values(r.summary);
  const names = Object.keys(scenarios[0]!);
  const ours = names.find((n) => n.startsWith('netloom'));
  if (ours === undefined) return [];
  return names
    .filter((n) => !n.startsWith('netloom'))
    .map((against) => {
      const ratios = scenarios
        .map((s) =>
          s[ours] !== undefined && s[against] !== undefined ? s[ours].median / s[against].median : NaN,
        )
        .filter((x) => Number.isFinite(x) && x > 0);
      const ratio = Math.exp(ratios.reduce((a, x) => a + Math.log(x), 0) / ratios.length);
      return { against, ratio };
    })
    .filter((b) => Number.isFinite(b.ratio));
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A horizontal grouped bar chart (log scale, 1x marked) as an SVG document. */
export function chart(results: ComparisonResult[]): string {
  const groups = results
    .map((r) => ({ workload: r.workload, bars: bars(r) }))
    .filter((g) => g.bars.length > 0);
  const bar = 16;
  const gap = 14;
  const left = 250;
  const width = 860;
  const plot = width - left - 60;
  const all = groups.flatMap((g) => g.bars.map((b) => b.ratio));
  const lo = Math.min(0.5, ...all);
  const hi = Math.max(2, ...all);
  const x = (v: number) => left + ((Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))) * plot;
  let y = 40;
  const parts: string[] = [];
  for (const g of groups) {
    parts.push(`<text x="10" y="${y + 12}" font-weight="bold">${esc(g.workload)}</text>`);
    for (const b of g.bars) {
      const x0 = x(Math.min(1, b.ratio));
      const x1 = x(Math.max(1, b.ratio));
      const fill = b.ratio >= 1 ? '#2e7d32' : '#c62828';
      parts.push(
        `<text x="${left - 8}" y="${y + 12}" text-anchor="end">vs ${esc(b.against)}</text>`,
        `<rect x="${x0.toFixed(1)}" y="${y}" width="${Math.max(1, x1 - x0).toFixed(1)}" height="${bar}" fill="${fill}"/>`,
        `<text x="${(x1 + 4).toFixed(1)}" y="${y + 12}">${b.ratio.toFixed(2)}x</text>`,
      );
      y += bar + 4;
    }
    y += gap;
  }
  const ticks = [0.25, 0.5, 1, 2, 4, 8, 16].filter((t) => t >= lo && t <= hi);
  const axis = ticks.map(
    (t) =>
      `<line x1="${x(t).toFixed(1)}" y1="28" x2="${x(t).toFixed(1)}" y2="${y}" stroke="${t === 1 ? '#000' : '#ddd'}"/>` +
      `<text x="${x(t).toFixed(1)}" y="22" text-anchor="middle">${t}x</text>`,
  );
  const machine = results[0]?.machine;
  const caption =
    machine === undefined ? '' : `${machine.cores} cores (${machine.cpu}), Node ${machine.node}`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 30}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
${axis.join('\n')}
${parts.join('\n')}
<text x="10" y="${y + 16}" fill="#555">netloom's throughput / the peer's (median of rounds; right of 1x: netloom is faster). ${esc(caption)}</text>
</svg>
`;
}

/** Every comparison's table as markdown. */
export function summary(results: ComparisonResult[]): string {
  const lines = ['# Benchmark results', ''];
  const m = results[0]?.machine;
  if (m !== undefined)
    lines.push(`Machine: ${m.cores} cores (${m.cpu}), Node ${m.node}. Server on CPU 0, load on CPU 1.`, '');
  lines.push('![netloom against its peers](chart.svg)', '');
  for (const r of results) {
    lines.push(`## ${r.workload} (${r.date.slice(0, 10)}, against ${r.peer})`, '');
    for (const [scenario, rows] of Object.entries(r.summary)) {
      lines.push(
        `${scenario}:`,
        '',
        '| contender | median/s | vs peer | per round | CPU µs/op |',
        '| --- | ---: | ---: | ---: | ---: |',
      );
      for (const [name, row] of Object.entries(rows))
        lines.push(
          `| ${name} | ${Math.round(row.median)} | ${row.ratio.toFixed(2)}x | ${row.roundRatio.toFixed(2)}x | ${Number.isFinite(row.cpuPerOp) ? row.cpuPerOp.toFixed(1) : '-'} |`,
        );
      lines.push('');
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Writes summary.md and chart.svg beside the results; returns their paths. */
export function writeReport(dir = RESULTS): { summary: string; chart: string } {
  const results = comparisons(dir);
  const paths = { summary: join(dir, 'summary.md'), chart: join(dir, 'chart.svg') };
  writeFileSync(paths.summary, summary(results));
  writeFileSync(paths.chart, chart(results));
  return paths;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const p = writeReport();
  console.log(`wrote ${p.summary} and ${p.chart}`);
}
