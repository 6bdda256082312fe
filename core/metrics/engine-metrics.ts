/**
 * The engine's own figures as metric samples: per-loop connection, byte and TLS counters (from the shared
 * stats rows), and the log pipeline's counters. Read at a scrape; nothing is added to the hot path.
 */
import type { LogStats } from '../log/shipper.ts';
import type { EngineStats } from '../stats.ts';
import type { MetricSample } from './exposition.ts';
import { defineMetric, type MetricFamily } from './family.ts';

const L = ['listener', 'loop'];
const openConnections = defineMetric(
  'netloom_connections_open',
  'gauge',
  'Connections open now (accepted and dialed).',
  L,
);
const accepted = defineMetric('netloom_connections_accepted_total', 'counter', 'Connections accepted.', L);
const closed = defineMetric('netloom_connections_closed_total', 'counter', 'Connections closed.', L);
const dialed = defineMetric('netloom_connections_dialed_total', 'counter', 'Outbound connections dialed.', L);
const rejected = defineMetric(
  'netloom_connections_rejected_total',
  'counter',
  'Connections closed at accept because the loop was at maxConnections.',
  L,
);
const bytesIn = defineMetric('netloom_received_bytes_total', 'counter', 'Bytes read from sockets.', L);
const bytesOut = defineMetric('netloom_sent_bytes_total', 'counter', 'Bytes handed to sockets.', L);
const writes = defineMetric(
  'netloom_socket_writes_total',
  'counter',
  'Socket write calls (each flush is one).',
  L,
);
const restarts = defineMetric(
  'netloom_loop_restarts_total',
  'counter',
  "Restarts of a loop's worker after a crash.",
  L,
);
const handshakes = defineMetric('netloom_tls_handshakes_total', 'counter', 'TLS handshakes completed.', L);
const resumed = defineMetric(
  'netloom_tls_resumed_total',
  'counter',
  'TLS handshakes that resumed a session.',
  L,
);
const tlsFailures = defineMetric(
  'netloom_tls_failures_total',
  'counter',
  'TLS connections that did not complete a handshake, by reason (failed, timeout, plaintext).',
  [...L, 'reason'],
);

const dropped = defineMetric(
  'netloom_metrics_series_dropped_total',
  'counter',
  'Series the metrics memory had no room for (their updates are not kept): raise metricsSeries/metricsCells.',
  ['listener'],
);

/** The samples of an engine's stats; `listener` names the engine (its address); `droppedSeries` its memory's. */
export function engineSamples(stats: EngineStats, listener: string, droppedSeries = 0): MetricSample[] {
  const out: MetricSample[] = [{ family: dropped, values: [listener], value: droppedSeries }];
  stats.loops.forEach((s, i) => {
    const v = [listener, String(i)];
    const put = (family: MetricFamily, value: number) => out.push({ family, values: v, value });
    put(openConnections, s.open);
    put(accepted, s.accepted);
    put(closed, s.closed);
    put(dialed, s.dialed);
    put(rejected, s.rejected);
    put(bytesIn, s.bytesIn);
    put(bytesOut, s.bytesOut);
    put(writes, s.writes);
    put(restarts, s.restarts);
    put(handshakes, s.tlsHandshakes);
    put(resumed, s.tlsResumed);
    out.push({ family: tlsFailures, values: [...v, 'failed'], value: s.tlsFailed });
    out.push({ family: tlsFailures, values: [...v, 'timeout'], value: s.tlsTimedOut });
    out.push({ family: tlsFailures, values: [...v, 'plaintext'], value: s.tlsPlaintext });
  });
  return out;
}

const logRecords = defineMetric(
  'netloom_log_records_total',
  'counter',
  'Log records by stage: written by producers, sampled out, committed to the ring, shipped by every sink.',
  ['stage'],
);
const logDropped = defineMetric('netloom_log_dropped_total', 'counter', 'Log records lost, by reason.', [
  'reason',
]);
const logBytes = defineMetric(
  'netloom_log_shipped_bytes_total',
  'counter',
  'Log bytes shipped, before (raw) and after (compressed) compression.',
  ['form'],
);
const logSinkErrors = defineMetric('netloom_log_sink_errors_total', 'counter', 'Errors sinks reported.');

/** The samples of a log pipeline's counters (`shipper.stats()`). */
export function logSamples(stats: LogStats): MetricSample[] {
  const out: MetricSample[] = [];
  for (const [stage, value] of [
    ['written', stats.written],
    ['sampled_out', stats.sampledOut],
    ['committed', stats.committed],
    ['shipped', stats.shipped],
  ] as const)
    out.push({ family: logRecords, values: [stage], value });
  for (const [reason, value] of [
    ['ring_full', stats.dropped.full],
    ['too_large', stats.dropped.tooLarge],
    ['sink', stats.dropped.sink],
    ['abandoned', stats.dropped.abandoned],
  ] as const)
    out.push({ family: logDropped, values: [reason], value });
  out.push({ family: logBytes, values: ['raw'], value: stats.bytesRaw });
  out.push({ family: logBytes, values: ['compressed'], value: stats.bytesCompressed });
  out.push({ family: logSinkErrors, values: [], value: stats.sinkErrors });
  return out;
}
