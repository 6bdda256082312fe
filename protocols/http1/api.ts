/**
 * The request and response a handler sees, whatever the HTTP version: the HTTP/1.1 codec implements them
 * (`Http1Request`, `Http1Response`) and so does the HTTP/2 codec, so one handler serves both unchanged.
 */
import type { Readable } from 'node:stream';
import type { Conn, EventHandler } from '../../core/index.ts';

/** A consumer of a request body that takes bytes in place (zero-copy), for proxies and streaming codecs. */
export interface BodyConsumer {
  /**
   * Body bytes. The view is valid only during the call (copy what you keep). Return `false` to stop reading
   * from the client until `req.resumeBody()`.
   */
  data(chunk: Buffer): boolean | void;
  /** The body is complete; `trailers` are those of a chunked body (or HTTP/2 trailers; empty otherwise). */
  end(trailers: readonly [string, string][]): void;
  /**
   * The body cannot complete: the client went away, timed out or sent bad framing, or the response ended
   * first (`ERR_HTTP_RESPONSE_ENDED`: the rest of the body is never read).
   */
  error(err: Error): void;
}

/**
 * One request. It is valid until its response has ended and its body was read (or discarded): after that
 * every method that reads the request throws `ERR_HTTP_STALE`, so a handler that kept it can never read the
 * next request's bytes by mistake. Header text is decoded only when asked for (HTTP/1.1).
 */
export interface Request {
  /** Method as sent (`GET`, `POST`, ...). */
  readonly method: string;
  /** `'1.1'`, `'1.0'` or `'2'`. */
  readonly httpVersion: '1.1' | '1.0' | '2';
  /** Free per-request slot for handlers and filters. */
  locals: Record<string, unknown> | undefined;
  /**
   * The request-target as sent: origin-form, absolute-form, `*`, or authority-form (HTTP/2: `:path`, or
   * `:authority` for CONNECT).
   */
  readonly target: string;
  /** The path: the target up to `?` (for absolute-form, without scheme and authority). */
  readonly path: string;
  /** The query string after `?`, without it; `''` when absent. */
  readonly query: string;
  /** The query parsed (a new object each call). */
  searchParams(): URLSearchParams;
  /**
   * The first value of header `name` (case-insensitive), or undefined. Over HTTP/2, `host` is the
   * `:authority` when the request has no Host field, and cookies sent as several fields read as one.
   */
  header(name: string): string | undefined;
  /** Every value of header `name`, in order. */
  headerValues(name: string): string[];
  /** Every header as `[name, value]` in the order received, names as sent (HTTP/2: lower-case). */
  headerPairs(): [string, string][];
  /** Number of header fields (HTTP/2 pseudo-header fields are not among them). */
  readonly headerCount: number;
  /** Name of field `k` as sent. */
  fieldName(k: number): string;
  /** Whether field `k`'s name is `lower` (lower-case). */
  fieldNameIs(k: number, lower: string): boolean;
  /** Length of field `k`'s name. */
  fieldNameLength(k: number): number;
  /** Bytes {@link copyField} writes for field `k`. */
  fieldSize(k: number): number;
  /** Copies field `k` as an HTTP/1.1 field line (`name: value\r\n`) into `out` at `p`, for proxies; returns the end. */
  copyField(k: number, out: Buffer, p: number): number;
  /** Value of field `k`, without surrounding whitespace. */
  fieldValue(k: number): string;
  /** Whether the connection stays open after this exchange (as decided so far; HTTP/2: until GOAWAY). */
  readonly keepAlive: boolean;
  /** The protocol asked for in `Upgrade` with `Connection: upgrade`, or undefined (always, over HTTP/2). */
  readonly upgrade: string | undefined;
  /** Content-Length as sent, or -1 (no body, a chunked one, or an HTTP/2 body of unstated length). */
  readonly contentLength: number;
  /** Whether a body follows the head. */
  readonly hasBody: boolean;
  /** Trailer fields, available once the body is complete. */
  readonly trailers: readonly [string, string][];
  /** The client's IP address ('' for Unix sockets). */
  readonly remoteAddress: string;
  /** Whether the request came over TLS. */
  readonly secure: boolean;
  /**
   * Aborted when the request ends before the handler answered it: the client went away or reset the stream
   * (an `HttpError` with code `ERR_HTTP_CLOSED`), or the server answered an error in its place (a body
   * timeout: 408, a body cut short or badly framed: 400). Made on first use.
   */
  readonly signal: AbortSignal;
  /**
   * The whole body in one buffer. Rejects with an `HttpError` 413 past `limit` bytes (default: the server's
   * `maxBodySize`); the server then answers 413 unless the response has started.
   */
  body(limit?: number): Promise<Buffer>;
  /** The body decoded as UTF-8. */
  text(limit?: number): Promise<string>;
  /** The body parsed as JSON; a syntax error rejects with an `HttpError` 400. */
  json<T = unknown>(limit?: number): Promise<T>;
  /** Streams the body to `consumer` in place (zero-copy); see {@link BodyConsumer}. */
  pipe(consumer: BodyConsumer): void;
  /**
   * Registers `listener` to run if the client goes away before the response ends: one listener per request,
   * without the cost of an `AbortSignal` (a proxy uses it to abandon its upstream exchange).
   */
  onAbort(listener: () => void): void;
  /** Resumes reading after a consumer's `data` returned false. */
  resumeBody(): void;
  /** The body as a Node.js Readable of copied chunks, with backpressure. */
  stream(): Readable;
}

/** Header lines copied verbatim into a head (a proxy forwarding an upstream's fields as bytes). */
export interface RawHeaders {
  /** An upper bound of the bytes `copy` writes. */
  readonly size: number;
  /** Whether the lines include a Date field (the server then adds none). */
  readonly hasDate: boolean;
  /** Writes the lines (each `name: value` ending in CRLF) into `buf` at `p`; returns the end. */
  copy(buf: Buffer, p: number): number;
}

/** A header value: numbers are written in decimal, arrays become one field line per element. */
export type HeaderValue = string | number | readonly string[];

/**
 * The response to one request, valid until it ends: afterwards calls that would change it throw
 * `ERR_HTTP_STALE` (`end()` again is a no-op). Header names and values are validated while serialized (no
 * CR/LF injection). A length given to `end` is declared; otherwise the body streams (chunked over HTTP/1.1,
 * DATA frames over HTTP/2). A declared length is enforced: more or fewer bytes throw
 * `ERR_HTTP_CONTENT_LENGTH_MISMATCH` (and end the connection, or reset the HTTP/2 stream).
 */
export interface Response {
  /** Status code to send (200 unless changed). */
  statusCode: number;
  /** The head has been written. */
  readonly headersSent: boolean;
  /** `end` was called (or the connection closed first). */
  readonly finished: boolean;
  /** Body bytes written so far (for access logs). */
  readonly bytesWritten: number;
  /**
   * The client is gone (connection closed, or the HTTP/2 stream reset): nothing more of this response can be
   * sent. A streaming handler checks it, or `req.signal`, which fires at the same moment.
   */
  readonly closed: boolean;
  /** Forgets status and headers set so far (before the head is sent): for an error answer after all. */
  reset(): this;
  /** Sets the status code (200-999). */
  status(code: number): this;
  /** Sets header `name`, replacing any earlier value of it (case-insensitive). */
  header(name: string, value: HeaderValue): this;
  /** Adds a value of header `name` after any earlier ones (for `set-cookie`). */
  appendHeader(name: string, value: HeaderValue): this;
  /** The first value set for `name`, or undefined. */
  getHeader(name: string): string | undefined;
  /** Whether a value is set for `name`. */
  hasHeader(name: string): boolean;
  /** Removes every value of `name`. */
  removeHeader(name: string): this;
  /**
   * Adds a trailer field sent after the body (set before `end`): over HTTP/2 a last HEADERS frame (gRPC's
   * `grpc-status` travels so); over HTTP/1.1 after a chunked body only (a declared length, or HTTP/1.0,
   * has no trailers: they are dropped).
   */
  trailer(name: string, value: string): this;
  /**
   * Writes the head now, before the body: `length` is the body length to declare (-1 to stream it). `raw`
   * adds header lines copied verbatim (pass only lines a strict parser accepted; over HTTP/2 they are
   * converted to fields, connection-specific ones dropped). The body then follows with `write`/`end`,
   * exactly `length` bytes when declared.
   */
  sendHead(length: number, raw?: RawHeaders): void;
  /**
   * Streams body bytes (the head goes first). Returns false when outbound bytes are above the high-water
   * mark or the peer's flow-control window is closed (wait for {@link drain}), and when the client is gone
   * ({@link closed}; `drain` then rejects with `ERR_HTTP_CLOSED`).
   */
  write(chunk: string | Uint8Array): boolean;
  /** Ends the response, with a last piece of body if given. A second call is a no-op. */
  end(body?: string | Uint8Array): void;
  /**
   * Sends `value` as JSON with `content-type: application/json`. With a JSON Schema it is serialized by a
   * fast-json-stringify function compiled once per schema object.
   */
  json(value: unknown, schema?: object): void;
  /** Resolves once written bytes can go on; rejects with an `HttpError` `ERR_HTTP_CLOSED` if the client is gone. */
  drain(): Promise<void>;
  /**
   * Ends the response at once, for a failure mid-body (`err` is logged as why): HTTP/1.1 closes the
   * connection, HTTP/2 resets the stream (INTERNAL_ERROR).
   */
  destroy(err?: Error): void;
  /**
   * Accepts a protocol upgrade (HTTP/1.1 only: over HTTP/2 it throws `ERR_HTTP_NO_UPGRADE`): sends 101 with
   * `upgrade: <protocol>` (for a CONNECT request, a 200 that makes the connection a tunnel) and the given
   * headers, then hands the connection, and any bytes that followed the request, to `handler`. The protocol
   * is `headers.upgrade` when given (the one chosen among several the client offered), else the client's
   * `Upgrade` value.
   */
  upgrade(handler: EventHandler, headers?: Readonly<Record<string, HeaderValue>>): void;
}

/** What the response hook learns of the exchange besides request and response. */
export interface ExchangeInfo {
  /** The connection the request came on. */
  readonly conn: Conn;
  /** When the request's head was complete: `performance.now()` with access logs, else the loop clock. */
  readonly startedAt: number;
}
