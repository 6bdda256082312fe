// The gateway's handler with one extra: GET /crash throws from a timer, killing the loop's worker
// (the engine restarts it), for the restart-resync test.
import type { EventLoop } from 'netloom';
import createGatewayHandler from '../../gateway/handler.ts';

export default function create(loop: EventLoop) {
  const gateway = createGatewayHandler(loop);
  const onTraffic = gateway.onTraffic!;
  return {
    ...gateway,
    onTraffic(conn: Parameters<typeof onTraffic>[0]) {
      if (conn.peek().toString('latin1').startsWith('GET /crash ')) {
        setTimeout(() => {
          throw new Error('deliberate loop crash');
        }, 1);
        conn.discard();
        return;
      }
      return onTraffic(conn);
    },
  };
}
