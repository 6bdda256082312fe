/**
 * The log ring and its shipper: a lock-free shared-memory ring every loop writes to, sampling before
 * serialization, and a worker that batches, compresses and ships (file, stdout, TCP, HTTP or your own sink).
 *
 * @packageDocumentation
 */
export type { BatchLimits } from './batcher.ts';
export { type AccessRecord, RingLogger, type SamplingOptions, setSampling } from './logger.ts';
export { KINDS, LEVELS, type LevelName, RingMemory } from './ring.ts';
export {
  LogShipper,
  type LogShipperOptions,
  type LogStats,
  readLogStats,
  startLogShipper,
} from './shipper.ts';
export {
  type Compression,
  createSink,
  FileSink,
  HttpSink,
  type LogBatch,
  type LogSink,
  type SinkConfig,
  TcpSink,
} from './sinks.ts';
