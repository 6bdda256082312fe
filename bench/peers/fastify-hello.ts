// Peer for the http1 workload: fastify's hello world.
import Fastify from 'fastify';

const app = Fastify({ logger: false, keepAliveTimeout: 60_000 });
app.get('/', (_req, reply) => {
  reply.type('text/plain').send('Hello, World!');
});
const port = Number(process.argv[2] ?? 0);
await app.listen({ port, host: '127.0.0.1' });
console.log(`listening ${(app.server.address() as { port: number }).port}`);
process.once('SIGTERM', () => process.exit(0));
