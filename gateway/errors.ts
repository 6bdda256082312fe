/** Typed errors of the gateway layer: one constructor, a stable code each (configuration errors are `ConfigError`). */

/** Stable error codes of the gateway. */
export type GatewayErrorCode =
  /** A filter set a field the gateway writes itself, an invalid name or value, or too late. */
  | 'ERR_GATEWAY_FILTER_HEADER'
  /** A filter named an upstream the configuration does not have, or changed it after `onRequest`. */
  | 'ERR_GATEWAY_FILTER_UPSTREAM'
  /** A reload did not apply on every loop (it was rolled back). */
  | 'ERR_GATEWAY_RELOAD'
  /** The admin endpoint refused a request (authentication, Host, cross-site). */
  | 'ERR_GATEWAY_ADMIN'
  /** etcd did not answer, or refused a call (the message says which endpoint and call). */
  | 'ERR_GATEWAY_ETCD'
  /** A configuration push lost its compare-and-swap: someone else stored a configuration first. */
  | 'ERR_GATEWAY_CONFIG_CONFLICT';

export class GatewayError extends Error {
  readonly code: GatewayErrorCode;
  constructor(code: GatewayErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'GatewayError';
    this.code = code;
  }
}
