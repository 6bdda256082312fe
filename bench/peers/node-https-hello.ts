// Peer for the https workload: node:https answering "Hello, World!" with the bench's certificate.
// usage: node-https-hello.ts PORT CERT KEY
import { readFileSync } from 'node:fs';
import https from 'node:https';

const [port = '0', cert = '', key = ''] = process.argv.slice(2);
const server = https.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (req, res) => {
  if (req.url === '/') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 13 });
    res.end('Hello, World!');
  } else {
    res.writeHead(404).end();
  }
});
server.keepAliveTimeout = 60_000;
server.listen(Number(port), '127.0.0.1', () =>
  console.log(`listening ${(server.address() as { port: number }).port}`),
);
process.once('SIGTERM', () => process.exit(0));
