// nginx as a peer: one worker, pinned like every server, config written to a scratch directory.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, type RunningServer, requireTools, startServer, which } from './harness.ts';

/**
 * Starts nginx with `http { server { ... } }` bodies given as `serverBlock` (listen is added; `ssl` for TLS,
 * `http2` for HTTP/2: nginx 1.22 names it on `listen`, and serves h2c by prior knowledge without `ssl`).
 */
export async function startNginx(
  name: string,
  serverBlock: string,
  httpExtra = '',
  workerConnections = 4096,
  listen: { ssl?: boolean; http2?: boolean } = {},
): Promise<RunningServer> {
  requireTools(['nginx']);
  const dir = mkdtempSync(join(tmpdir(), 'netloom-nginx-'));
  const port = await freePort();
  const conf = `
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${workerConnections}; }
worker_rlimit_nofile ${workerConnections + 64};
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  ${httpExtra}
  server {
    listen 127.0.0.1:${port} reuseport${listen.ssl === true ? ' ssl' : ''}${listen.http2 === true ? ' http2' : ''};
    ${serverBlock}
  }
}`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  return startServer(name, which('nginx')!, ['-p', dir, '-c', join(dir, 'nginx.conf')], { port });
}
