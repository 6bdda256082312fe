// Peer for the ws broadcast workload: the ws package's server as its README broadcasts, every message sent
// to every other client (no compression: the load generator offers none).
import { WebSocket, WebSocketServer } from 'ws';

const port = Number(process.argv[2] ?? 0);
const wss: WebSocketServer = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('listening', () => console.log(`listening ${(wss.address() as { port: number }).port}`));
wss.on('connection', (ws: WebSocket) => {
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});
process.once('SIGTERM', () => process.exit(0));
