import type { Conn } from './conn.ts';
import type { EventLoop } from './loop.ts';

/**
 * What the engine does after a callback returns (gnet's `Action`). Returning nothing means `None`.
 */
export const Action = {
  /** Carry on. */
  None: 0,
  /** Close this connection after its pending writes (for loop-level callbacks: nothing). */
  Close: 1,
  /** Stop the whole engine gracefully, as `engine.stop()` would. */
  Shutdown: 2,
} as const;
/** One of {@link Action}'s values. */
export type Action = (typeof Action)[keyof typeof Action];

/**
 * The event handler a loop drives. Every callback runs on the thread of the loop that owns the connection
 * (a loop's worker thread, or the calling thread with `loops: 1`) and never concurrently with another
 * callback of the same loop. A callback that throws gets its connection destroyed with an
 * `ERR_NETLOOM_HANDLER` error (passed to `onClose`); the loop carries on.
 *
 * Data lent to a callback (`conn.peek`, `conn.next`) is valid only until the callback returns.
 */
export interface EventHandler<Ctx = unknown> {
  /**
   * Once per loop, before it accepts connections. Runs on the loop's thread. May be async (loading
   * configuration, opening files); the loop listens when it settles. Returning `Shutdown` stops the engine.
   */
  onBoot?(loop: EventLoop): Action | void | Promise<Action | void>;

  /** A connection opened (accepted, or a dial completed). Loop thread. Writes are flushed after it returns. */
  onOpen?(conn: Conn<Ctx>): Action | void;

  /**
   * Bytes arrived. Read them with `peek`/`next`/`discard`; what is left unconsumed is kept (copied into the
   * loop's arena) and offered again with the next bytes. Writes made here are staged and leave in one socket
   * write per connection at the end of this I/O phase. Loop thread.
   */
  onTraffic?(conn: Conn<Ctx>): Action | void;

  /**
   * The connection's queued outbound bytes went above the high-water mark (or `conn.whenWritable()` was
   * asked) and have now fallen to the low-water mark: a streaming writer may continue. Loop thread.
   */
  onWritable?(conn: Conn<Ctx>): Action | void;

  /**
   * The peer closed its sending side (TCP FIN). Without this callback the engine closes the connection after
   * its pending writes; a codec with responses still to send returns `None` and closes later. Loop thread.
   */
  onEof?(conn: Conn<Ctx>): Action | void;

  /**
   * A deadline set with `conn.setDeadline` passed. Without this callback the engine destroys the connection
   * with an `ERR_NETLOOM_DEADLINE` error. Loop thread.
   */
  onDeadline?(conn: Conn<Ctx>): Action | void;

  /**
   * The connection closed; `err` is why, if it was not a clean close (an `ERR_NETLOOM_*` error, a socket error
   * such as `ECONNRESET`, or a failed dial). Called exactly once per connection that was created, including
   * dials that never connected. Loop thread.
   */
  onClose?(conn: Conn<Ctx>, err: Error | undefined): Action | void;

  /** Every `tickInterval` milliseconds while the loop runs. Loop thread. */
  onTick?(loop: EventLoop): Action | void;

  /**
   * The engine began a graceful stop: the loop no longer accepts; idle connections will be closed and busy
   * ones given until the deadline. Called once for the listener's handler and once for each other handler
   * a live connection was handed to (`setHandler`, an upgrade). Loop thread.
   */
  onShutdown?(loop: EventLoop): void;
}

/**
 * What a handler module exports (as `default` or as `handler`): a handler, or a factory called once per
 * loop on the loop's thread (for per-loop state, or to read `loop.data`).
 */
export type HandlerExport<Ctx = unknown> =
  | EventHandler<Ctx>
  | ((loop: EventLoop) => EventHandler<Ctx> | Promise<EventHandler<Ctx>>);
