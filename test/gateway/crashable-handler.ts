// The gateway's handler with one extra: GET /crash throws from a timer, killing the loop's worker
// (the engine restarts it), for the restart-resync tests. Written as a user would: it wraps what
// createGatewayHandler returns.
import type { Conn, EventLoop } from 'netloom';
import { createGatewayHandler } from 'netloom/gateway';

export default async function create(loop: EventLoop) {
  const gateway = await createGatewayHandler(loop);
  const onTraffic = gateway.onTraffic!;
  return {
    ...gateway,
    onTraffic(conn: Conn<never>) {
      if (conn.peek().toString('latin1').startsWith('GET /crash ')) {
        setTimeout(() => {
          throw new Error('deliberate loop crash');
        }, 1);
        conn.discard();
        return;
      }
      return onTraffic(conn as never);
    },
  };
}
