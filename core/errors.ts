/**
 * Typed errors of the engine. Every error the engine hands to a callback is a {@link NetloomError} with a
 * stable `code`, so handlers can branch on the code instead of parsing messages.
 */

/** Stable error codes of the engine. */
export type NetloomErrorCode =
  | 'ERR_NETLOOM_OPTION'
  | 'ERR_NETLOOM_ADDRESS'
  | 'ERR_NETLOOM_IDLE_TIMEOUT'
  | 'ERR_NETLOOM_DEADLINE'
  | 'ERR_NETLOOM_INBOUND_OVERFLOW'
  | 'ERR_NETLOOM_OUTBOUND_OVERFLOW'
  | 'ERR_NETLOOM_DIAL'
  | 'ERR_NETLOOM_DIAL_TIMEOUT'
  | 'ERR_NETLOOM_SHUTDOWN'
  | 'ERR_NETLOOM_HANDLER'
  | 'ERR_NETLOOM_LOOP'
  | 'ERR_NETLOOM_TLS';

/** Base class of every error the engine raises or passes to `onClose`. */
export class NetloomError extends Error {
  /** Stable machine-readable code. */
  readonly code: NetloomErrorCode;

  constructor(code: NetloomErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NetloomError';
    this.code = code;
  }
}

/** Builds an error; one constructor so codes and messages stay consistent. */
export function netloomError(code: NetloomErrorCode, message: string, cause?: unknown): NetloomError {
  return new NetloomError(code, message, cause === undefined ? undefined : { cause });
}
