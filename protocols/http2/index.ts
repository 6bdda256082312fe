/**
 * netloom's HTTP/2 codec (RFC 9113, HPACK of RFC 7541 of our own) and the server that speaks HTTP/1.1 and
 * HTTP/2 on one listener with one handler API.
 *
 * @packageDocumentation
 */

export { Http2ClientConnection, http2ClientHandler, refusedError } from './client.ts';
export { Http2ClientStream } from './client-stream.ts';
export {
  type Http2RequestAbortMessage,
  type Http2RequestStartMessage,
  type Http2ResponseFinishMessage,
  http2Channels,
  http2UsdtProbes,
} from './diagnostics.ts';
export { checkFrame, type FrameHeader, Http2Error, readFrameHeader } from './frames.ts';
export {
  type DecoderLimits,
  type EncoderOptions,
  type HeaderField,
  HeaderListTooLarge,
  HpackDecoder,
  HpackEncoder,
  HpackError,
} from './hpack.ts';
export type { Http2Request } from './request.ts';
export type { Http2Response } from './response.ts';
export { type Http2Options, type ServerOptions, server } from './server.ts';
