/**
 * `node:diagnostics_channel` probes of the HTTP/2 server, one start and one end (a finish or an abort) a
 * stream, as the HTTP/1.1 server's: free while nobody subscribes (`hasSubscribers`). Channels are per
 * thread: subscribe on each loop's thread. The objects are the live request and response; read them during
 * the call.
 */
import diagnostics from 'node:diagnostics_channel';
import type { UsdtProbeSpec } from '../../core/index.ts';
import type { Http2Request } from './request.ts';
import type { Http2Response } from './response.ts';

/** `netloom:http2:request:start`: a request's HEADERS were accepted, before the handler runs. */
export interface Http2RequestStartMessage {
  readonly request: Http2Request;
  readonly response: Http2Response;
  /** The stream's identifier. */
  readonly stream: number;
}

/** `netloom:http2:response:finish`: the response's END_STREAM went out (the answer is whole). */
export interface Http2ResponseFinishMessage {
  readonly request: Http2Request;
  readonly response: Http2Response;
  readonly stream: number;
}

/** `netloom:http2:request:abort`: the stream ended before its response (a reset, the connection lost). */
export interface Http2RequestAbortMessage {
  readonly request: Http2Request;
  readonly response: Http2Response;
  readonly stream: number;
  readonly error: Error;
}

/** The HTTP/2 server's channels, by name. */
export const http2Channels = {
  requestStart: diagnostics.channel('netloom:http2:request:start'),
  responseFinish: diagnostics.channel('netloom:http2:response:finish'),
  requestAbort: diagnostics.channel('netloom:http2:request:abort'),
} as const;

/**
 * The HTTP/2 server's USDT probes (for `bridgeToUsdt`): `http2-request-start(stream, method, path)`,
 * `http2-response-finish(stream, status)`, `http2-request-abort(stream, reason)`.
 */
export const http2UsdtProbes: readonly UsdtProbeSpec[] = [
  {
    channel: 'netloom:http2:request:start',
    probe: 'http2-request-start',
    types: ['int', 'char *', 'char *'],
    args: (m) => {
      const s = m as Http2RequestStartMessage;
      return [s.stream, s.request.method, s.request.path];
    },
  },
  {
    channel: 'netloom:http2:response:finish',
    probe: 'http2-response-finish',
    types: ['int', 'int'],
    args: (m) => [
      (m as Http2ResponseFinishMessage).stream,
      (m as Http2ResponseFinishMessage).response.statusCode,
    ],
  },
  {
    channel: 'netloom:http2:request:abort',
    probe: 'http2-request-abort',
    types: ['int', 'char *'],
    args: (m) => [(m as Http2RequestAbortMessage).stream, (m as Http2RequestAbortMessage).error.message],
  },
];
