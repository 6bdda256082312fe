/**
 * `node:diagnostics_channel` probes of the HTTP/1.1 server: free while nobody subscribes
 * (`hasSubscribers`). Channels are per thread: subscribe on each loop's thread. The objects are the live
 * request and response: read them during the call (a request's fields are views that go stale after it).
 */
import diagnostics from 'node:diagnostics_channel';
import type { UsdtProbeSpec } from '../../core/index.ts';
import type { Request, Response } from './api.ts';

/** `netloom:http1:request:start`: a request head was parsed, before the handler runs. */
export interface RequestStartMessage {
  readonly request: Request;
  readonly response: Response;
}

/** `netloom:http1:response:finish`: the response went out whole (the exchange is over). */
export interface ResponseFinishMessage {
  readonly request: Request;
  readonly response: Response;
}

/** `netloom:http1:request:abort`: the request ended before its response did (the client left, a timeout). */
export interface RequestAbortMessage {
  readonly request: Request;
  readonly response: Response;
  readonly error: Error;
}

/** The HTTP/1.1 server's channels, by name. */
export const http1Channels = {
  requestStart: diagnostics.channel('netloom:http1:request:start'),
  responseFinish: diagnostics.channel('netloom:http1:response:finish'),
  requestAbort: diagnostics.channel('netloom:http1:request:abort'),
} as const;

/**
 * The HTTP/1.1 server's USDT probes (for `bridgeToUsdt`): `http1-request-start(method, path)`,
 * `http1-response-finish(status)`, `http1-request-abort(reason)`.
 */
export const http1UsdtProbes: readonly UsdtProbeSpec[] = [
  {
    channel: 'netloom:http1:request:start',
    probe: 'http1-request-start',
    types: ['char *', 'char *'],
    args: (m) => [(m as RequestStartMessage).request.method, (m as RequestStartMessage).request.path],
  },
  {
    channel: 'netloom:http1:response:finish',
    probe: 'http1-response-finish',
    types: ['int'],
    args: (m) => [(m as ResponseFinishMessage).response.statusCode],
  },
  {
    channel: 'netloom:http1:request:abort',
    probe: 'http1-request-abort',
    types: ['char *'],
    args: (m) => [(m as RequestAbortMessage).error.message],
  },
];
