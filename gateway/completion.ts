/**
 * The completion record: one per request that reached a route, filled as the request goes, final when it is
 * over. Filters' `onComplete`, the access log and metrics all read this one record.
 */

/** Why a request did not get an upstream's answer (null when it did, or a filter answered). */
export type FailureKind =
  /** No usable target: all unhealthy, ejected, or none configured. */
  | 'no-healthy-target'
  /** The pool's queue was full, or no connection became free in time. */
  | 'pool-exhausted'
  | 'connect-failed'
  | 'connect-timeout'
  /** No response head within `timeouts.firstByte`, or the whole exchange past `timeouts.total`. */
  | 'upstream-timeout'
  /** The upstream closed or reset the connection mid-exchange. */
  | 'upstream-closed'
  /** The upstream's response could not be parsed or forwarded. */
  | 'bad-response'
  /** The client went away (or its request body broke off) before the response was complete. */
  | 'client-gone'
  /** A filter threw, or set something the upstream request could not carry. */
  | 'filter-error'
  /** The request needs what its upstream cannot do (a WebSocket to an HTTP/2 upstream a filter chose). */
  | 'unsupported';

/** Who produced the answer the client got. */
export type AnsweredBy = 'upstream' | 'gateway' | 'filter' | 'nobody';

/** What one request through a route did. Times are milliseconds; -1 where a phase did not happen. */
export class CompletionRecord {
  readonly route: string;
  readonly domain: string;
  readonly method: string;
  /** The normalised path (before the route's rewrite). */
  readonly path: string;
  /** When the request's head was complete (epoch ms). */
  readonly startedAt: number;
  upstream: string | null = null;
  /** The last target tried (`host:port`). */
  target: string | null = null;
  /** The status the client got (0 when it got none: the connection was cut). */
  status = 0;
  answeredBy: AnsweredBy = 'nobody';
  /** Extra attempts on other targets. */
  retries = 0;
  /** A retry was due but the upstream's retry budget was spent (the failure was answered instead). */
  retryDenied = false;
  /**
   * What a `circuit-breaker` made of the request: `closed` (let through), `open` (given the fallback,
   * static or the degraded upstream, while open or half-open), `half-open` (let through as a probe), or
   * `shed` (a low-priority route cut while the circuit is still closed); null without a breaker.
   */
  circuit: 'closed' | 'open' | 'half-open' | 'shed' | null = null;
  /** A copy of the request went to the route's shadow upstream (`routes[].mirror`). */
  mirrored = false;
  error: FailureKind | null = null;
  /** Until an upstream connection was ready (connected or taken from the pool), for the last attempt. */
  connectMs = -1;
  /** Until the upstream's response head arrived. */
  firstByteMs = -1;
  /** Until the response ended (or failed). */
  totalMs = -1;
  /** Request body bytes read from the client and response body bytes written to it. */
  bytesIn = 0;
  bytesOut = 0;

  constructor(route: string, domain: string, method: string, path: string, startedAt: number) {
    this.route = route;
    this.domain = domain;
    this.method = method;
    this.path = path;
    this.startedAt = startedAt;
  }
}
