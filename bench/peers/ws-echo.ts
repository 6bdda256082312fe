// Peer for the ws workload: the ws package's server echoing every message (no compression: the load
// generator offers none either).
import { type WebSocket, WebSocketServer } from 'ws';

const port = Number(process.argv[2] ?? 0);
const wss: WebSocketServer = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });
wss.on('listening', () => console.log(`listening ${(wss.address() as { port: number }).port}`));
wss.on('connection', (ws: WebSocket) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
process.once('SIGTERM', () => process.exit(0));
