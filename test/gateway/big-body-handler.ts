// The gateway's handler module with the HTTP server's request body limit lifted (the default handler keeps
// the server's 1 MiB `maxBodySize`, and the configuration has no setting for it), so the proxy's streaming
// of large uploads can be tested. Everything else is the default handler's.
import type { EventHandler, EventLoop } from 'netloom';
import { type Exchange, server } from 'netloom/http1';
import { GatewayLoop, type GatewayLoopData } from '../../gateway/index.ts';

export default function createBigBodyGatewayHandler(loop: EventLoop): EventHandler<Exchange> {
  const gateway = new GatewayLoop(loop, loop.data as GatewayLoopData);
  const http = server((req, res) => gateway.handle(req, res), { maxBodySize: Number.MAX_SAFE_INTEGER });
  return {
    ...http,
    onShutdown(l) {
      http.onShutdown?.(l);
      gateway.close();
    },
  };
}
