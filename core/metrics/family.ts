/**
 * Metric families: what a series counts and which labels it takes, defined once at module level and
 * checked where they are defined.
 */

/** What a family counts: a monotonic `counter`, a `gauge` that goes both ways, or a `histogram`. */
export type MetricType = 'counter' | 'gauge' | 'histogram';

/** A metric family: series of one name with the same label names. Define once, at module level. */
export interface MetricFamily {
  /** The metric's name (`[a-zA-Z_:][a-zA-Z0-9_:]*`); counters end in `_total`, histograms name a unit. */
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  /** The label names each series gives values for, in this order. */
  readonly labels: readonly string[];
  /** Histograms: the bucket upper bounds, ascending (`+Inf` is implied). */
  readonly buckets: readonly number[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Defines a metric family (checked: a bad name, label or bound throws a `TypeError` here, not at a scrape).
 * `buckets` only for histograms.
 */
export function defineMetric(
  name: string,
  type: MetricType,
  help: string,
  labels: readonly string[] = [],
  buckets: readonly number[] = [],
): MetricFamily {
  if (!NAME.test(name))
    throw new TypeError(`metric name ${JSON.stringify(name)} is not [a-zA-Z_:][a-zA-Z0-9_:]*`);
  for (const l of labels)
    if (!LABEL.test(l) || l.startsWith('__') || (type === 'histogram' && l === 'le'))
      throw new TypeError(`label name ${JSON.stringify(l)} of ${name} is not allowed`);
  if (new Set(labels).size !== labels.length) throw new TypeError(`${name} repeats a label name`);
  if (type === 'histogram') {
    if (buckets.length === 0) throw new TypeError(`histogram ${name} needs bucket bounds`);
    for (let i = 0; i < buckets.length; i++)
      if (!Number.isFinite(buckets[i]!) || (i > 0 && buckets[i]! <= buckets[i - 1]!))
        throw new TypeError(`histogram ${name}: bounds are finite and ascending`);
  } else if (buckets.length > 0) throw new TypeError(`${name}: only histograms have buckets`);
  return Object.freeze({ name, help, type, labels: [...labels], buckets: [...buckets] });
}

/** Cells a series of `family` takes: one, or a histogram's buckets, `+Inf`, sum and count. */
export function widthOf(family: MetricFamily): number {
  return family.type === 'histogram' ? family.buckets.length + 3 : 1;
}

/** Joins label values into a series key (a value may hold anything but this character). */
export const KEY_SEPARATOR = '\u0000';
