// A real etcd for the fleet tests (Debian's etcd-server): on free ports with a data directory of its own,
// stopped, killed and restarted on the same ports and data; a cuttable TCP relay in front of it (to
// disconnect a gateway while etcd keeps running); and `netloom-gateway --etcd` processes.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdClient } from 'netloom/gateway';
import { freePort } from '../helpers.ts';
import { runGateway } from './gateway-process.ts';

export { freePort };

export interface EtcdServer {
  readonly endpoint: string;
  readonly client: EtcdClient;
  /** SIGKILL (as a crash); `restart` brings it back on the same ports and data. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((r) => c.once('exit', () => r()));

async function launch(dir: string, client: number, peer: number): Promise<ChildProcess> {
  const child = spawn(
    'etcd',
    [
      '--name',
      'test',
      '--data-dir',
      join(dir, 'data'),
      '--listen-client-urls',
      `http://127.0.0.1:${client}`,
      '--advertise-client-urls',
      `http://127.0.0.1:${client}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-cluster',
      `test=http://127.0.0.1:${peer}`,
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d;
  });
  const probe = new EtcdClient({ endpoints: [`http://127.0.0.1:${client}`], timeout: 500 });
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`etcd exited: ${err}`);
    try {
      await probe.range('probe');
      return child;
    } catch {
      if (Date.now() > until) {
        child.kill('SIGKILL');
        throw new Error(`etcd did not answer within 10 s: ${err}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Starts etcd on free ports. */
export async function startEtcd(): Promise<EtcdServer> {
  const dir = mkdtempSync(join(tmpdir(), 'netloom-etcd-'));
  const clientPort = await freePort();
  const peerPort = await freePort();
  let child = await launch(dir, clientPort, peerPort);
  const endpoint = `http://127.0.0.1:${clientPort}`;
  return {
    endpoint,
    client: new EtcdClient({ endpoints: [endpoint] }),
    async kill() {
      child.kill('SIGKILL');
      await exited(child);
    },
    async restart() {
      child = await launch(dir, clientPort, peerPort);
    },
    async stop() {
      child.kill('SIGKILL');
      await exited(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A TCP relay to `target` that the test can cut (every connection closed, new ones refused) and restore. */
export async function relay(target: number) {
  let open = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((downstream) => {
    if (!open) {
      downstream.destroy();
      return;
    }
    const upstream = net.connect(target, '127.0.0.1');
    sockets.add(downstream);
    sockets.add(upstream);
    downstream.on('error', () => upstream.destroy());
    upstream.on('error', () => downstream.destroy());
    downstream.on('close', () => {
      sockets.delete(downstream);
      upstream.destroy();
    });
    upstream.on('close', () => {
      sockets.delete(upstream);
      downstream.destroy();
    });
    downstream.pipe(upstream).pipe(downstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    cut() {
      open = false;
      for (const s of sockets) s.destroy();
    },
    restore() {
      open = true;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export interface EtcdGateway {
  /** Its admin port (the configuration says port 0: each process has its own). */
  readonly admin: number;
  output(): string;
  /** SIGTERM, drained; SIGKILL after 7 s. */
  stop(): Promise<void>;
}

export const ADMIN_TOKEN = 'etcd-test-admin-token-0123456789';

/** Runs `netloom-gateway` with `args` (`--etcd ...`); resolves once it listens, with its admin port. */
export async function etcdGateway(args: string[]): Promise<EtcdGateway> {
  const g = await runGateway(args, /admin on [^\n]*:\d+/);
  return { admin: Number(/admin on [^\n]*:(\d+)/.exec(g.output())?.[1]), output: g.output, stop: g.stop };
}

/**
 * A fleet's configuration: one listener (2 loops; every process binds it, SO_REUSEPORT shares it), an admin
 * endpoint on a port of each process's own, one route to `upstream`.
 */
export function fleetConfig(port: number, upstream: string, extra: Record<string, unknown> = {}) {
  return {
    listeners: [{ address: `127.0.0.1:${port}`, loops: 2 }],
    admin: { address: '127.0.0.1:0', token: ADMIN_TOKEN },
    upstreams: { app: { targets: [{ address: upstream }] } },
    routes: [{ name: 'all', match: { path: '/' }, upstream: 'app' }],
    ...extra,
  };
}
