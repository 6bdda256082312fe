// h2s: HTTP/2 over TLS (ALPN h2): netloom's hello example (1 loop) vs node:http2's secure server and nginx
// (one worker, `listen ... ssl http2`), the same ECDSA P-256 certificate; h2load with 10 connections x 10
// streams and 100 x 10 (connections are made once: this measures requests, not handshakes).
import { join } from 'node:path';
import { benchCertificate } from '../certificate.ts';
import { h2load } from '../h2load.ts';
import { compare, NODE, NODE_ARGS, ROOT, type Scenario, startServer } from '../harness.ts';
import { startNginx } from '../nginx.ts';

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  const { cert, key } = benchCertificate();
  const node = (name: string, script: string, extra: string[]) => ({
    name,
    start: () => startServer(name, NODE, [...NODE_ARGS, join(ROOT, script), ...extra]),
  });
  const tls = (connections: number) => (s: { port: number }, seconds: number) =>
    h2load(s.port, { connections, streams: 10, seconds, scheme: 'https' });
  const scenarios: Scenario[] = [
    { name: '10 conns x 10 streams', measure: tls(10) },
    { name: '100 conns x 10 streams', measure: tls(100) },
  ];
  await compare({
    workload: 'h2s',
    contenders: [
      node('netloom (1 loop)', 'examples/hello/main.ts', [
        '--port',
        '0',
        '--loops',
        '1',
        '--cert',
        cert,
        '--key',
        key,
      ]),
      node('node:http2 (TLS)', 'bench/peers/node-http2-secure-hello.ts', ['0', cert, key]),
      {
        name: 'nginx (1 worker)',
        start: () =>
          startNginx(
            'nginx (1 worker)',
            `ssl_certificate ${cert}; ssl_certificate_key ${key};
    location / { default_type text/plain; return 200 'Hello, World!'; }`,
            'http2_max_concurrent_streams 100; ssl_protocols TLSv1.2 TLSv1.3;',
            4096,
            { ssl: true, http2: true },
          ),
      },
    ],
    scenarios,
    peer: 'node:http2 (TLS)',
    pairs: [['netloom (1 loop)', 'nginx (1 worker)']],
    rounds: args.rounds,
    seconds: args.seconds,
    warmupSeconds: 2,
    notes: ['targets: >= 2.5x node:http2 and >= 1.0x nginx'],
  });
}
