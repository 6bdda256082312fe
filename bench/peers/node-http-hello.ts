// Peer for the http1 workload: node:http answering "Hello, World!" as plainly as it can.
import http from 'node:http';

const port = Number(process.argv[2] ?? 0);
const server = http.createServer((req, res) => {
  if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 13 });
    res.end('Hello, World!');
  } else {
    res.writeHead(404).end();
  }
});
server.keepAliveTimeout = Number(process.argv[3] ?? 60_000);
server.listen(port, '127.0.0.1', () =>
  console.log(`listening ${(server.address() as { port: number }).port}`),
);
process.once('SIGTERM', () => process.exit(0));
