/**
 * netloom's HTTP/1.1 codec: a strict incremental parser of our own (RFC 9112), the server API on the engine,
 * and the pieces (head parser, body decoder) a client or proxy reuses.
 *
 * @packageDocumentation
 */

export type {
  BodyConsumer,
  ExchangeInfo,
  HeaderValue,
  RawHeaders,
  Request,
  Response,
} from './api.ts';
export {
  BODY_CHUNKED,
  BODY_LENGTH,
  BODY_NONE,
  BODY_UNTIL_CLOSE,
  BodyDecoder,
  type BodyLimits,
  type BodySink,
} from './body.ts';
export {
  ClientConnection,
  type ClientResponse,
  clientHandler,
  type OutgoingRequest,
  type RawRequestHeaders,
  type RequestFraming,
  type ResponseSink,
} from './client.ts';
export {
  http1Channels,
  http1UsdtProbes,
  type RequestAbortMessage,
  type RequestStartMessage,
  type ResponseFinishMessage,
} from './diagnostics.ts';
export { HttpError } from './errors.ts';
export type { Exchange } from './exchange.ts';
export { HEAD_ERROR, type HeadLimits, HeadParser, latin1, NEED_MORE } from './head.ts';
export { type RequestHandler, type ServerOptions, server } from './server.ts';
export { currentDateLine, STATUS_TEXT, statusLine } from './status.ts';
