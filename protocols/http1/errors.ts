/** An error that maps to an HTTP status: thrown by the codec for bad input, usable by handlers too. */
export class HttpError extends Error {
  /** The status the server answers with. */
  readonly status: number;
  /** Stable code: `ERR_HTTP_<STATUS>` or a more specific one. */
  readonly code: string;

  constructor(status: number, message: string, code = `ERR_HTTP_${status}`) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.code = code;
  }
}
