export { engineSamples, logSamples } from './engine-metrics.ts';
export { EXPOSITION_CONTENT_TYPE, type MetricSample, memorySamples, renderExposition } from './exposition.ts';
export { defineMetric, type MetricFamily, type MetricType } from './family.ts';
export {
  createMetricsMemory,
  type DirectorySeries,
  MetricsMemory,
  type MetricsMemoryOptions,
} from './memory.ts';
export { MetricSeries, MetricsWriter } from './writer.ts';
