// Shared by the review tests: a server with one WebSocket behaviour on every path, and small waits.
import { serve } from 'netloom';
import { server } from 'netloom/http1';
import { type WebSocketBehavior, webSocket } from 'netloom/websocket';

export async function start(behavior: WebSocketBehavior<undefined>, opts: { async?: boolean } = {}) {
  const ws = webSocket(behavior);
  const engine = await serve(
    server(
      opts.async
        ? async (req, res) => {
            await new Promise((r) => setTimeout(r, 50));
            ws.upgrade(req, res);
          }
        : (req, res) => {
            ws.upgrade(req, res);
          },
    ),
    { loops: 1 },
  );
  return { port: engine.port, stop: () => engine.stop() };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
