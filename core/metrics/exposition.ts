/**
 * The Prometheus text exposition format (version 0.0.4): samples grouped by family, each family once with
 * its `# HELP` and `# TYPE` lines, label values escaped, histograms as cumulative `_bucket{le}` series plus
 * `_sum` and `_count`. Samples of the same family and labels from several sources (the rows of a memory,
 * several engines) are summed.
 */
import { KEY_SEPARATOR, type MetricFamily } from './family.ts';
import type { MetricsMemory } from './memory.ts';

/** The content type of {@link renderExposition}'s text. */
export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * One series' value at a scrape: a number for counters and gauges; for histograms the cells as a memory
 * keeps them (per-bucket counts, then the `+Inf` overflow, the sum and the count).
 */
export interface MetricSample {
  readonly family: MetricFamily;
  /** Label values, one per `family.labels` name. */
  readonly values: readonly string[];
  readonly value: number | Float64Array;
}

/** The samples a memory holds now: every series, its rows summed. */
export function memorySamples(memory: MetricsMemory): MetricSample[] {
  const { directory, cells } = memory.snapshot();
  const out: MetricSample[] = [];
  for (const { family, series } of directory) {
    const width = family.type === 'histogram' ? family.buckets.length + 3 : 1;
    for (const s of series) {
      if (s.cell + width > cells.length) continue; // claimed after the sum was taken
      out.push({
        family,
        values: s.values,
        value: width === 1 ? cells[s.cell]! : cells.slice(s.cell, s.cell + width),
      });
    }
  }
  return out;
}

function escapeLabel(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => (c === '\n' ? '\\n' : '\\\\'));
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

function labelText(names: readonly string[], values: readonly string[], extra = ''): string {
  let s = '';
  for (let i = 0; i < names.length; i++)
    s += `${s === '' ? '' : ','}${names[i]}="${escapeLabel(values[i]!)}"`;
  if (extra !== '') s += s === '' ? extra : `,${extra}`;
  return s === '' ? '' : `{${s}}`;
}

/**
 * Renders samples as Prometheus text, families in the order first seen. A sample whose family has the
 * name of an earlier one of another type or labels is left out (a scrape never fails on it).
 */
export function renderExposition(samples: Iterable<MetricSample>): string {
  const families = new Map<string, { family: MetricFamily; series: Map<string, MetricSample> }>();
  for (const sample of samples) {
    const f = sample.family;
    let entry = families.get(f.name);
    if (entry === undefined) {
      entry = { family: f, series: new Map() };
      families.set(f.name, entry);
    } else if (
      entry.family.type !== f.type ||
      entry.family.labels.join(',') !== f.labels.join(',') ||
      entry.family.buckets.join(',') !== f.buckets.join(',')
    )
      continue;
    const key = sample.values.join(KEY_SEPARATOR);
    const known = entry.series.get(key);
    if (known === undefined) {
      entry.series.set(key, {
        ...sample,
        value: typeof sample.value === 'number' ? sample.value : sample.value.slice(),
      });
    } else if (typeof known.value === 'number') {
      entry.series.set(key, { ...known, value: known.value + (sample.value as number) });
    } else {
      const sum = known.value;
      const add = sample.value as Float64Array;
      for (let i = 0; i < sum.length; i++) sum[i]! += add[i] ?? 0;
    }
  }
  let out = '';
  for (const { family, series } of families.values()) {
    out += `# HELP ${family.name} ${escapeHelp(family.help)}\n# TYPE ${family.name} ${family.type}\n`;
    for (const s of series.values()) {
      if (typeof s.value === 'number') {
        out += `${family.name}${labelText(family.labels, s.values)} ${formatValue(s.value)}\n`;
        continue;
      }
      const cells = s.value;
      const bounds = family.buckets;
      let cumulative = 0;
      for (let b = 0; b < bounds.length; b++) {
        cumulative += cells[b]!;
        out += `${family.name}_bucket${labelText(family.labels, s.values, `le="${formatValue(bounds[b]!)}"`)} ${cumulative}\n`;
      }
      const count = cells[bounds.length + 2]!;
      out += `${family.name}_bucket${labelText(family.labels, s.values, 'le="+Inf"')} ${count}\n`;
      out += `${family.name}_sum${labelText(family.labels, s.values)} ${formatValue(cells[bounds.length + 1]!)}\n`;
      out += `${family.name}_count${labelText(family.labels, s.values)} ${count}\n`;
    }
  }
  return out;
}
