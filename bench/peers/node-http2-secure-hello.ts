// Peer for the h2s workload: node:http2 over TLS (ALPN h2) answering "Hello, World!" with the bench's
// certificate. usage: node-http2-secure-hello.ts PORT CERT KEY
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';

const [port = '0', cert = '', key = ''] = process.argv.slice(2);
const server = http2.createSecureServer({
  cert: readFileSync(cert),
  key: readFileSync(key),
  settings: { maxConcurrentStreams: 100 },
});
server.on('stream', (stream, headers) => {
  if (headers[':path'] === '/') {
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': 13 });
    stream.end('Hello, World!');
  } else {
    stream.respond({ ':status': 404 });
    stream.end();
  }
});
server.listen(Number(port), '127.0.0.1', () =>
  console.log(`listening ${(server.address() as { port: number }).port}`),
);
process.once('SIGTERM', () => process.exit(0));
