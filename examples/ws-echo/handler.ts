// The ws-echo handler every loop imports: a WebSocket at any path echoes every message (text as text,
// binary as binary), with permessage-deflate for clients that offer it; plain HTTP gets a short answer.
import type { EventLoop } from 'netloom';
import { server } from 'netloom/http1';
import { webSocket } from 'netloom/websocket';

const echo = webSocket({
  compression: true,
  maxPayload: 64 * 1024 * 1024,
  // Room for the echo of the largest message allowed (past the outbound limit a send is dropped).
  maxBackpressure: 128 * 1024 * 1024,
  message(ws, message, binary) {
    ws.send(message, binary);
  },
});

export default (_loop: EventLoop) =>
  server((req, res) => {
    if (req.upgrade?.toLowerCase() === 'websocket') echo.upgrade(req, res);
    else res.header('content-type', 'text/plain').end('netloom ws-echo: open a WebSocket here\n');
  });
