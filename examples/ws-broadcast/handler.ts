// The ws-broadcast handler every loop imports: a live room. Every WebSocket joins the topic "room" when it
// opens, and each message one sends is published to everyone else in the room, on every loop.
import type { EventLoop } from 'netloom';
import { server } from 'netloom/http1';
import { webSocket } from 'netloom/websocket';

const room = webSocket({
  open(ws) {
    ws.subscribe('room');
  },
  message(ws, message, binary) {
    ws.publish('room', message, binary);
  },
});

export default (_loop: EventLoop) =>
  server((req, res) => {
    if (req.upgrade?.toLowerCase() === 'websocket') room.upgrade(req, res);
    else
      res
        .header('content-type', 'text/plain')
        .end('netloom ws-broadcast: open a WebSocket to join the room\n');
  });
