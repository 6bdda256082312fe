/**
 * WebSocket failures, one constructor for the codec: each kind says the close code it is answered with
 * (RFC 6455 §7.4.1) and a stable `code` for logs and handlers.
 */

/** Close codes (RFC 6455 §7.4.1). */
export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_UNSUPPORTED_DATA = 1003;
/** Never sent: the peer's close frame had no code. */
export const CLOSE_NO_STATUS = 1005;
/** Never sent: the connection ended without a close frame. */
export const CLOSE_ABNORMAL = 1006;
export const CLOSE_INVALID_DATA = 1007;
export const CLOSE_POLICY = 1008;
export const CLOSE_TOO_BIG = 1009;
export const CLOSE_INTERNAL = 1011;

const KINDS = {
  rsv: [CLOSE_PROTOCOL_ERROR, 'ERR_WS_RSV'],
  opcode: [CLOSE_PROTOCOL_ERROR, 'ERR_WS_OPCODE'],
  unmasked: [CLOSE_PROTOCOL_ERROR, 'ERR_WS_UNMASKED'],
  masked: [CLOSE_PROTOCOL_ERROR, 'ERR_WS_MASKED'],
  control: [CLOSE_PROTOCOL_ERROR, 'ERR_WS_CONTROL_FRAME'],
  fragment: [CLOSE_PROTOCOL_ERROR, 'ERR_WS_FRAGMENT'],
  closeFrame: [CLOSE_PROTOCOL_ERROR, 'ERR_WS_CLOSE_FRAME'],
  length: [CLOSE_PROTOCOL_ERROR, 'ERR_WS_LENGTH'],
  utf8: [CLOSE_INVALID_DATA, 'ERR_WS_INVALID_UTF8'],
  inflate: [CLOSE_INVALID_DATA, 'ERR_WS_INFLATE'],
  tooBig: [CLOSE_TOO_BIG, 'ERR_WS_TOO_BIG'],
  backpressure: [CLOSE_POLICY, 'ERR_WS_BACKPRESSURE'],
  timeout: [CLOSE_GOING_AWAY, 'ERR_WS_TIMEOUT'],
  handler: [CLOSE_INTERNAL, 'ERR_WS_HANDLER'],
} as const;

/** What went wrong, by name. */
export type WebSocketErrorKind = keyof typeof KINDS;

/** A WebSocket failure: `closeCode` is what the connection closes with. */
export class WebSocketError extends Error {
  readonly closeCode: number;
  readonly code: string;
  readonly kind: WebSocketErrorKind;
  constructor(kind: WebSocketErrorKind, message: string) {
    super(message);
    this.name = 'WebSocketError';
    this.kind = kind;
    this.closeCode = KINDS[kind][0];
    this.code = KINDS[kind][1];
  }
}

/** The one constructor of the codec's errors. */
export function wsError(kind: WebSocketErrorKind, message: string): WebSocketError {
  return new WebSocketError(kind, message);
}

/**
 * Whether `code` may stand in a close frame: 1000-1014 but the three never sent (1004 reserved, 1005 and
 * 1006 local-only), and 3000-4999 (registered and private use).
 */
export function validCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  );
}
