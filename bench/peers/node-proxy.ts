// Peer for the proxy workload: a node:http reverse proxy with a keep-alive agent.
import http from 'node:http';

const [port, upstreamPort] = process.argv.slice(2).map(Number) as [number, number];
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const server = http.createServer((req, res) => {
  const up = http.request(
    { host: '127.0.0.1', port: upstreamPort, path: req.url, method: req.method, headers: req.headers, agent },
    (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    },
  );
  up.on('error', () => {
    res.writeHead(502).end();
  });
  req.pipe(up);
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () =>
  console.log(`listening ${(server.address() as { port: number }).port}`),
);
process.once('SIGTERM', () => process.exit(0));
