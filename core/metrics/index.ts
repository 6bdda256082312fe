export { engineSamples, logSamples } from './engine-metrics.ts';
export { EXPOSITION_CONTENT_TYPE, type MetricSample, memorySamples, renderExposition } from './exposition.ts';
export {
  createMetricsMemory,
  defineMetric,
  type MetricFamily,
  MetricSeries,
  MetricsMemory,
  type MetricsMemoryOptions,
  MetricsWriter,
  type MetricType,
} from './memory.ts';
