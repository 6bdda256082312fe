// A real redis-server (Debian's) on a free loopback port, and gateways in processes of their own, for the
// cluster-wide rate-limit tests.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../helpers.ts';
import { runGateway } from './gateway-process.ts';

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** A client for the test's own looks (keys, CLIENT LIST, DEBUG SLEEP). */
  client(): Redis;
  /** SIGKILL: Redis gone at once, as a crash. */
  kill(): Promise<void>;
  /** Starts it again on the same port (empty). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

function launch(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--loglevel',
      'warning',
      '--enable-debug-command',
      'local',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server did not start: ${out}`));
    }, 10_000);
    const ready = async () => {
      // Ready once it answers PING.
      const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null });
      probe.on('error', () => {});
      try {
        await probe.connect();
        await probe.ping();
        clearTimeout(timer);
        resolve(child);
      } catch {
        setTimeout(ready, 50);
      } finally {
        probe.disconnect();
      }
    };
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr!.on('data', (d: Buffer) => {
      out += d;
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}): ${out}`));
    });
    setTimeout(ready, 30);
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts redis-server on a free port. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child = await launch(port);
  const clients: Redis[] = [];
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    client() {
      const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 });
      c.on('error', () => {});
      clients.push(c);
      return c;
    },
    async kill() {
      child.kill('SIGKILL');
      await exited(child);
    },
    async restart() {
      child = await launch(port);
    },
    async stop() {
      for (const c of clients) c.disconnect();
      child.kill('SIGKILL');
      await exited(child);
    },
  };
}

export interface GatewayProcess {
  readonly port: number;
  readonly admin: number;
  /** What it printed so far. */
  output(): string;
  stop(): Promise<void>;
}

/** Runs `netloom-gateway --config` on `config` (JSON; its listener and admin ports are picked here). */
export async function gatewayProcess(
  config: Record<string, unknown>,
  loops = 2,
  token = 'redis-test-admin-token-0123',
): Promise<GatewayProcess> {
  const port = await freePort();
  const admin = await freePort();
  const file = join(mkdtempSync(join(tmpdir(), 'netloom-redis-')), 'gateway.json');
  writeFileSync(
    file,
    JSON.stringify({
      ...config,
      listeners: [{ address: `127.0.0.1:${port}`, loops }],
      admin: { address: `127.0.0.1:${admin}`, token },
    }),
  );
  const gateway = await runGateway(['--config', file], /listening on/, 5000);
  return { port, admin, output: gateway.output, stop: gateway.stop };
}
