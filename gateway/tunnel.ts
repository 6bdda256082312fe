/**
 * CONNECT tunnels, for routes that list CONNECT in `match.methods`: a target of the route's upstream is
 * dialed, the client gets `200` once it answers, and bytes flow both ways untouched, with backpressure each
 * way (a side that cannot keep up pauses the other). Either side's FIN or close ends both, after what was
 * already sent (half-closed tunnels are not carried).
 */
import type { Conn, EventHandler, EventLoop } from '../core/index.ts';
import type { Request, Response } from '../protocols/http1/index.ts';
import { sendGatewayError } from './call.ts';
import type { FailureKind } from './completion.ts';
import type { RouteRuntime } from './runtime.ts';
import type { Upstream } from './upstream.ts';

/** One side of a tunnel; `context` is the other side's connection (null until both are up). */
const side: EventHandler<Conn<unknown> | null> = {
  onTraffic(conn) {
    const peer = conn.context;
    if (peer === null || peer === undefined || peer.closed) return; // held until the other side is up
    peer.write(conn.next());
    if (peer.outboundBuffered > peer.loop.options.highWaterMark && !peer.whenWritable()) conn.pause();
  },
  onWritable(conn) {
    // This side drained: the other may send again.
    const peer = conn.context;
    if (peer !== null && peer !== undefined && !peer.closed) peer.resume();
  },
  onEof(conn) {
    (conn.context as Conn | null | undefined)?.close();
    conn.close();
  },
  onClose(conn) {
    (conn.context as Conn | null | undefined)?.close();
  },
};

/**
 * Opens a tunnel for a CONNECT request on `route` to a target of `upstream` (the route's, or the one its
 * traffic rules chose); the request is answered here, now or once dialed, and `settle` says how (null:
 * the tunnel stands), once.
 */
export function openTunnel(
  req: Request,
  res: Response,
  route: RouteRuntime,
  upstream: Upstream,
  loop: EventLoop,
  settle: (failure: FailureKind | null) => void,
): void {
  const target = upstream.pick(undefined, null);
  if (target === null) {
    sendGatewayError(res, 503, 'no healthy upstream', { upstream: upstream.name, route: route.name });
    settle('no-healthy-target');
    return;
  }
  let settled = false;
  const far = loop.dial<Conn<unknown> | null>(
    target.address,
    {
      ...side,
      onOpen(upstreamConn) {
        settled = true;
        if (res.closed) {
          upstreamConn.close();
          settle('client-gone');
          return;
        }
        res.upgrade({
          ...side,
          onOpen(clientConn) {
            clientConn.context = upstreamConn as Conn<unknown>;
            upstreamConn.context = clientConn as Conn<unknown>;
            // Bytes the client sent before the tunnel stood (now buffered) flow on the first traffic turn.
            clientConn.wake();
            upstreamConn.wake();
          },
        } as EventHandler);
        settle(null);
      },
      onClose(upstreamConn, err) {
        if (!settled) {
          settled = true;
          const kind =
            (err as { code?: string } | undefined)?.code === 'ERR_NETLOOM_DIAL_TIMEOUT'
              ? 'connect-timeout'
              : 'connect-failed';
          upstream.failed(target, kind);
          sendGatewayError(res, 502, 'upstream connect failed', {
            upstream: upstream.name,
            route: route.name,
          });
          settle(kind);
          return;
        }
        side.onClose!(upstreamConn, err);
      },
    },
    { timeout: upstream.config.pool.connectTimeout, context: null },
  );
  req.onAbort(() => {
    if (!settled) far.destroy();
  });
}
