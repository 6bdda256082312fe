// Peer for the proxy workload: a node:http front end forwarding through an undici Pool (keep-alive).
import http from 'node:http';
import { Pool } from 'undici';

const [port, upstreamPort] = process.argv.slice(2).map(Number) as [number, number];
const pool = new Pool(`http://127.0.0.1:${upstreamPort}`, { connections: 128, pipelining: 1 });
const server = http.createServer(async (req, res) => {
  try {
    const { statusCode, headers, body } = await pool.request({
      path: req.url ?? '/',
      method: (req.method ?? 'GET') as 'GET',
      headers: req.headers as Record<string, string>,
      body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
    });
    res.writeHead(statusCode, headers as http.OutgoingHttpHeaders);
    for await (const chunk of body) res.write(chunk);
    res.end();
  } catch {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  }
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () =>
  console.log(`listening ${(server.address() as { port: number }).port}`),
);
process.once('SIGTERM', () => process.exit(0));
