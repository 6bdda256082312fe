/**
 * netloom's WebSocket codec (RFC 6455): the upgrade on the HTTP/1.1 server, an explicit frame reader with
 * limits checked before buffering, incremental UTF-8 validation, the close handshake, and backpressure.
 *
 * @packageDocumentation
 */

export { connectWebSocket, type WebSocketClientOptions, WebSocketHandshakeError } from './client.ts';
export type { CompressionOptions } from './deflate.ts';
export {
  CLOSE_ABNORMAL,
  CLOSE_GOING_AWAY,
  CLOSE_INVALID_DATA,
  CLOSE_NO_STATUS,
  CLOSE_NORMAL,
  CLOSE_POLICY,
  CLOSE_PROTOCOL_ERROR,
  CLOSE_TOO_BIG,
  validCloseCode,
  WebSocketError,
  type WebSocketErrorKind,
} from './errors.ts';
export { acceptFor, type WebSocketBehavior, type WebSocketServer, webSocket } from './server.ts';
export { Utf8Validator } from './utf8.ts';
export { type SendStatus, WebSocket } from './websocket.ts';
