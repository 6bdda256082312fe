// haproxy as a peer: one thread, pinned like every server, in http mode in front of one upstream.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, type RunningServer, startServer, which } from './harness.ts';

/** Starts haproxy (config written into `dir`) proxying to 127.0.0.1:`up`; `defaults` adds lines there. */
export async function startHaproxy(dir: string, up: number, defaults: string[]): Promise<RunningServer> {
  const port = await freePort();
  const cfg = join(dir, 'haproxy.cfg');
  const lines = [
    'global',
    '  nbthread 1',
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    ...defaults.map((d) => `  ${d}`),
    'frontend f',
    `  bind 127.0.0.1:${port}`,
    '  default_backend b',
    'backend b',
    `  server s1 127.0.0.1:${up}`,
  ];
  writeFileSync(cfg, `${lines.join('\n')}\n`);
  return startServer('haproxy', which('haproxy')!, ['-f', cfg, '-db'], { port });
}
