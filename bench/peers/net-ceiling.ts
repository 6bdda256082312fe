// The ceiling of the http1 workload: a node:net server that answers every request with a canned response
// without parsing it (it only counts the CRLFCRLF that end request heads). No HTTP server can be cheaper
// on the same runtime.
import net from 'node:net';

const RESPONSE = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nHello, World!';
const cache: Buffer[] = [];
const responses = (n: number) => {
  let b = cache[n];
  if (b === undefined) cache[n] = b = Buffer.from(RESPONSE.repeat(n));
  return b;
};

const port = Number(process.argv[2] ?? 0);
const server = net.createServer({ noDelay: true }, (socket) => {
  let tail = 0; // how many bytes of "\r\n\r\n" the previous chunk ended with
  socket.on('data', (chunk: Buffer) => {
    let n = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === 13) tail = tail === 2 ? 3 : 1;
      else if (b === 10 && (tail === 1 || tail === 3)) {
        if (tail === 3) {
          n++;
          tail = 0;
        } else tail = 2;
      } else tail = 0;
    }
    if (n > 0) socket.write(responses(n));
  });
  socket.on('error', () => {});
});
server.listen(port, '127.0.0.1', () =>
  console.log(`listening ${(server.address() as net.AddressInfo).port}`),
);
process.once('SIGTERM', () => process.exit(0));
