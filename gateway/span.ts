/**
 * OpenTelemetry spans of proxied requests. A sampled request gets a server span (its whole life in the
 * gateway, a child of the client's `traceparent` span when it sent one) and, once a target is tried, a
 * client span (the upstream exchange, whose id is the parent the upstream sees in the `traceparent` the
 * proxy sends). Sampling is parent-based: a request whose valid `traceparent` says sampled (flag 01) is
 * sampled, one that says not is not, and a new trace is sampled when its trace id falls under
 * `sampleRatio` (the W3C/OTel TraceIdRatioBased rule, so every gateway of a fleet decides alike).
 *
 * Spans leave the loop as one ring record a request (both spans), written into a ring of their own and
 * exported by the log shipper's worker (gateway/tracing-export.ts): the loop never waits on the collector,
 * and a full ring drops spans and counts them (`netloom_log_dropped_total` of the span pipeline is on
 * `/metrics` as `netloom_gateway_spans_dropped_total`).
 */
import { hostname } from 'node:os';
import { extname } from 'node:path';
import { z } from 'zod';
import { type LogShipper, type RingLogger, startLogShipper } from '../core/index.ts';
import type { CompletionRecord } from './completion.ts';
import { duration, headerRecord } from './config-fields.ts';
import { validTraceparent } from './tracing.ts';
import type { OtlpSinkOptions } from './tracing-export.ts';

/** The `observability.tracing` section. */
export const tracingSettings = z
  .object({
    /** The OTLP/HTTP traces endpoint (`http(s)://collector:4318/v1/traces`); spans are sent as OTLP JSON. */
    endpoint: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), 'the endpoint is an http:// or https:// URL'),
    /** Fields sent with every export (an API key). */
    headers: headerRecord(z.string()).default({}),
    /** Share of new traces sampled, 0-1 (requests with a parent follow its sampled flag). Default 1. */
    sampleRatio: z.number().min(0).max(1).default(1),
    /** The `service.name` resource attribute. */
    serviceName: z.string().min(1).default('netloom-gateway'),
    /** Milliseconds an export may take before it is given up (its spans counted dropped). */
    timeout: duration.min(1).default(5000),
    /** Bytes of spans waiting for export (a power of two); past it new spans are dropped and counted. */
    queueBytes: z
      .number()
      .int()
      .min(64 * 1024)
      .max(256 * 1024 * 1024)
      .refine((n) => (n & (n - 1)) === 0, 'queueBytes is a power of two')
      .default(4 * 1024 * 1024),
    /** Spans an export carries at most, and how long a span waits for its batch (ms). */
    batch: z
      .object({
        maxSpans: z.number().int().min(1).max(10_000).default(512),
        maxDelay: duration.min(1).default(1000),
      })
      .strict()
      .default({ maxSpans: 512, maxDelay: 1000 }),
  })
  .strict();

export type TracingSettings = z.infer<typeof tracingSettings>;

/** The span id and sampled flag of a valid incoming `traceparent`, or null (a new trace starts). */
export function parentOf(incoming: string | undefined): { spanId: string; sampled: boolean } | null {
  const m = validTraceparent(incoming);
  return m === null ? null : { spanId: m[3]!, sampled: (Number.parseInt(m[4]!, 16) & 1) === 1 };
}

/** Microseconds since the epoch, with sub-millisecond precision. */
export function epochMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** What a traced call knows of its spans while it runs. */
export interface SpanTimes {
  readonly traceId: string;
  /** The server span's own id, and its parent (the client's span, or '' for a root). */
  readonly serverId: string;
  readonly parentId: string;
  /** The client span's id: the span id of the `traceparent` sent upstream. */
  readonly clientId: string;
  readonly start: number;
  /** When the first target was tried (0: none was). */
  clientStart: number;
  /** When the upstream's response head came (0: it did not). */
  firstByte: number;
  /** The client's address (read at the start: the request object does not outlive its answer). */
  readonly client: string;
}

/** One loop's span writer. */
export class Tracer {
  private readonly threshold: number;
  private readonly ring: RingLogger;

  constructor(settings: TracingSettings, ring: RingLogger) {
    // TraceIdRatioBased: sampled when the trace id's last 52 bits read as a fraction fall under the ratio.
    this.threshold = settings.sampleRatio * 2 ** 52;
    this.ring = ring;
  }

  /** Whether a request is sampled: its parent's flag, else the ratio on `traceId` (32 hex digits). */
  sampled(parent: { sampled: boolean } | null, traceId: string): boolean {
    if (parent !== null) return parent.sampled;
    if (this.threshold >= 2 ** 52) return true;
    return Number.parseInt(traceId.slice(19), 16) < this.threshold;
  }

  /** Writes the request's spans (a ring record) once its completion record is final. */
  record(times: SpanTimes, record: CompletionRecord): void {
    const end = epochMicros();
    const payload = {
      span: 1,
      traceId: times.traceId,
      serverId: times.serverId,
      parentId: times.parentId,
      clientId: times.clientId,
      start: times.start,
      end,
      clientStart: times.clientStart,
      firstByte: times.firstByte,
      method: record.method,
      path: record.path,
      route: record.route,
      domain: record.domain,
      status: record.status,
      answeredBy: record.answeredBy,
      error: record.error,
      upstream: record.upstream,
      target: record.target,
      retries: record.retries,
      client: times.client,
    };
    this.ring.raw(3, 2, JSON.stringify(payload)); // level info, kind metric (a record of the span ring)
  }
}

/** Starts the span ring and its exporter (the main thread, at the gateway's start). */
export function startSpanExport(settings: TracingSettings): Promise<LogShipper> {
  // The sink module beside this one (.ts from source, .js from dist): the shipper's worker imports it.
  const here = new URL(import.meta.url);
  const module = new URL(`./tracing-export${extname(here.pathname)}`, here).href;
  const options: OtlpSinkOptions = {
    endpoint: settings.endpoint,
    headers: settings.headers,
    timeout: settings.timeout,
    serviceName: settings.serviceName,
    instance: `${hostname()}:${process.pid}`,
  };
  return startLogShipper({
    capacity: settings.queueBytes,
    sink: { type: 'module', module, options },
    compression: 'none',
    batch: { maxRecords: settings.batch.maxSpans, maxDelay: settings.batch.maxDelay },
    // One export at a time is enough for a collector; more only queue up behind a slow one.
    maxPending: 2,
  });
}
