// Peer for the echo workload: the plainest node:net echo server.
import net from 'node:net';

const port = Number(process.argv[2] ?? 0);
const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on('data', (chunk) => socket.write(chunk));
  socket.on('error', () => {});
});
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${(server.address() as net.AddressInfo).port}`);
});
process.once('SIGTERM', () => process.exit(0));
