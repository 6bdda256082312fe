// redis-server for the Redis-backed rate-limit contenders: pinned to the server CPU (its work is the
// gateway's cost), no persistence.
import { freePort, type RunningServer, startServer, which } from './harness.ts';

/** Starts Debian's redis-server on a free loopback port. */
export async function startRedis(): Promise<RunningServer> {
  const port = await freePort();
  return startServer(
    'redis',
    which('redis-server')!,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { port },
  );
}
