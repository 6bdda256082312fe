/**
 * The span ring's sink (runs in the log shipper's worker, off the loops): turns a batch of span records
 * into an OTLP/HTTP JSON export (`ExportTraceServiceRequest`) and POSTs it. A batch the collector refuses
 * or does not answer within `timeout` is tried once more, then given up (the shipper counts its spans
 * dropped): spans never pile up behind a collector that is down.
 */
import type { LogBatch, LogSink } from '../core/index.ts';

/** What the gateway hands the sink (plain data: it crosses to the worker). */
export interface OtlpSinkOptions {
  endpoint: string;
  headers: Record<string, string>;
  timeout: number;
  serviceName: string;
  /** The `service.version`/instance attributes' source: the process id. */
  instance: string;
}

/** A span record as the loops write it (gateway/span.ts), in its NDJSON envelope. */
interface SpanRecord {
  span?: number;
  traceId: string;
  serverId: string;
  parentId: string;
  clientId: string;
  start: number;
  end: number;
  clientStart: number;
  firstByte: number;
  method: string;
  path: string;
  route: string;
  domain: string;
  status: number;
  answeredBy: string;
  error: string | null;
  upstream: string | null;
  target: string | null;
  retries: number;
  client: string;
}

type AnyValue = { stringValue: string } | { intValue: string } | { boolValue: boolean };
interface KeyValue {
  key: string;
  value: AnyValue;
}

const str = (key: string, v: string): KeyValue => ({ key, value: { stringValue: v } });
const int = (key: string, v: number): KeyValue => ({ key, value: { intValue: String(Math.trunc(v)) } });
/** Microseconds to the nanosecond strings OTLP JSON carries (64-bit integers as strings). */
const nanos = (us: number) => `${Math.trunc(us)}000`;

const SPAN_KIND_SERVER = 2;
const SPAN_KIND_CLIENT = 3;
const STATUS_ERROR = 2;

/** The OTLP spans of one record: the server span, and the client span when a target was tried. */
export function otlpSpans(r: SpanRecord): object[] {
  const server: KeyValue[] = [
    str('http.request.method', r.method),
    str('url.path', r.path),
    str('http.route', r.route),
    str('client.address', r.client),
    str('netloom.domain', r.domain),
    str('netloom.answered_by', r.answeredBy),
  ];
  if (r.status > 0) server.push(int('http.response.status_code', r.status));
  if (r.error !== null) server.push(str('error.type', r.error));
  const spans: object[] = [
    {
      traceId: r.traceId,
      spanId: r.serverId,
      ...(r.parentId === '' ? {} : { parentSpanId: r.parentId }),
      name: `${r.method} ${r.route}`,
      kind: SPAN_KIND_SERVER,
      startTimeUnixNano: nanos(r.start),
      endTimeUnixNano: nanos(r.end),
      attributes: server,
      // HTTP semantic conventions: a server span is an error for 5xx (4xx are the client's), or no answer.
      status: r.status >= 500 || (r.status === 0 && r.error !== null) ? { code: STATUS_ERROR } : {},
    },
  ];
  if (r.clientStart > 0 && r.target !== null) {
    const target = r.target.replace(/^https?:\/\//, ''); // an https:// target's scheme is not its address
    const colon = target.lastIndexOf(':');
    const client: KeyValue[] = [
      str('http.request.method', r.method),
      str('server.address', colon > 0 ? target.slice(0, colon).replace(/^\[|\]$/g, '') : target),
      str('netloom.upstream', r.upstream ?? ''),
    ];
    if (colon > 0) client.push(int('server.port', Number(target.slice(colon + 1))));
    if (r.answeredBy === 'upstream' && r.status > 0) client.push(int('http.response.status_code', r.status));
    if (r.retries > 0) client.push(int('http.request.resend_count', r.retries));
    if (r.error !== null) client.push(str('error.type', r.error));
    spans.push({
      traceId: r.traceId,
      spanId: r.clientId,
      parentSpanId: r.serverId,
      name: r.method,
      kind: SPAN_KIND_CLIENT,
      startTimeUnixNano: nanos(r.clientStart),
      endTimeUnixNano: nanos(r.end),
      attributes: client,
      status: r.error !== null || r.status >= 500 ? { code: STATUS_ERROR } : {},
      ...(r.firstByte > 0
        ? { events: [{ name: 'first byte', timeUnixNano: nanos(r.firstByte), attributes: [] }] }
        : {}),
    });
  }
  return spans;
}

/** The sink factory the shipper's worker calls (the module sink's default export). */
export default function otlpSink(options: OtlpSinkOptions): LogSink {
  const resource = {
    attributes: [str('service.name', options.serviceName), str('service.instance.id', options.instance)],
  };
  /** Exports in flight: a close (the gateway stopping) aborts them rather than wait for the collector. */
  const inFlight = new Set<AbortController>();
  let closed = false;
  const send = async (body: string): Promise<void> => {
    if (closed) throw new Error('the span exporter is closed');
    const abort = new AbortController();
    inFlight.add(abort);
    try {
      const res = await fetch(options.endpoint, {
        method: 'POST',
        headers: { ...options.headers, 'content-type': 'application/json' },
        body,
        signal: AbortSignal.any([abort.signal, AbortSignal.timeout(options.timeout)]),
      });
      await res.arrayBuffer(); // the body is read so the connection can be reused
      if (!res.ok) throw new Error(`the OTLP endpoint answered ${res.status}`);
    } finally {
      inFlight.delete(abort);
    }
  };
  return {
    async write(batch: LogBatch): Promise<void> {
      const spans: object[] = [];
      for (const line of batch.data.toString('utf8').split('\n')) {
        if (line === '') continue;
        const r = JSON.parse(line) as SpanRecord;
        if (r.span === 1) spans.push(...otlpSpans(r));
      }
      if (spans.length === 0) return;
      const body = JSON.stringify({
        resourceSpans: [{ resource, scopeSpans: [{ scope: { name: 'netloom-gateway' }, spans }] }],
      });
      try {
        await send(body);
      } catch {
        if (closed) throw new Error('the span exporter is closed');
        await new Promise((r) => setTimeout(r, 200));
        await send(body); // once more; then the shipper counts the batch dropped
      }
    },
    async close(): Promise<void> {
      closed = true;
      for (const a of inFlight) a.abort();
    },
  };
}
