// Peer for the h2 workload: node:http2 (nghttp2 underneath) answering "Hello, World!" as plainly as it can,
// cleartext with prior knowledge.
import http2 from 'node:http2';

const port = Number(process.argv[2] ?? 0);
const server = http2.createServer({ settings: { maxConcurrentStreams: 100 } });
server.on('stream', (stream, headers) => {
  if (headers[':path'] === '/') {
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': 13 });
    stream.end('Hello, World!');
  } else {
    stream.respond({ ':status': 404 });
    stream.end();
  }
});
server.listen(port, '127.0.0.1', () =>
  console.log(`listening ${(server.address() as { port: number }).port}`),
);
process.once('SIGTERM', () => process.exit(0));
