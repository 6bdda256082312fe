// https: netloom's hello example over TLS (1 loop) vs node:https and nginx (one worker, `return 200`,
// ssl_session_tickets on), all with the same ECDSA P-256 certificate made for the run. Keep-alive with wrk
// (100 connections); new connections with `Connection: close` (a full handshake per request: wrk does not
// resume sessions); and handshakes one after another with `openssl s_time`, full (-new) and resumed (-reuse).
import { join } from 'node:path';
import { benchCertificate } from '../certificate.ts';
import {
  compare,
  NODE,
  NODE_ARGS,
  ROOT,
  requireTools,
  runLoad,
  type Sample,
  type Scenario,
  startServer,
} from '../harness.ts';
import { startNginx } from '../nginx.ts';
import { wrk } from '../wrk.ts';

/** `openssl s_time` for `seconds`: handshakes per second, one connection at a time (`-reuse`: resumed). */
async function sTime(port: number, seconds: number, reuse: boolean): Promise<Sample> {
  const out = await runLoad('openssl', [
    's_time',
    '-connect',
    `127.0.0.1:${port}`,
    reuse ? '-reuse' : '-new',
    '-time',
    String(seconds),
    '-www',
    '/',
  ]);
  const m = /(\d+) connections in (\d+) real seconds/.exec(out);
  if (m === null) throw new Error(`could not read s_time's output:\n${out}`);
  return { rate: Number(m[1]) / Math.max(1, Number(m[2])) };
}

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  requireTools(['wrk', 'openssl', 'nginx']);
  const { cert, key } = benchCertificate();
  const node = (name: string, script: string, extra: string[]) => ({
    name,
    start: () => startServer(name, NODE, [...NODE_ARGS, join(ROOT, script), ...extra]),
  });
  const scenarios: Scenario[] = [
    {
      name: 'keep-alive, 100 conns',
      measure: (s, seconds) => wrk(s.port, { connections: 100, seconds, scheme: 'https' }),
    },
    {
      name: 'new connection per request, 50 conns',
      measure: (s, seconds) =>
        wrk(s.port, { connections: 50, seconds, scheme: 'https', headers: ['Connection: close'] }),
    },
    { name: 'full handshakes, one at a time', measure: (s, seconds) => sTime(s.port, seconds, false) },
    { name: 'resumed handshakes, one at a time', measure: (s, seconds) => sTime(s.port, seconds, true) },
  ];
  await compare({
    workload: 'https',
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
      node('node:https', 'bench/peers/node-https-hello.ts', ['0', cert, key]),
      {
        name: 'nginx (1 worker)',
        start: () =>
          startNginx(
            'nginx (1 worker)',
            `ssl_certificate ${cert}; ssl_certificate_key ${key};
    location / { default_type text/plain; return 200 'Hello, World!'; }`,
            'ssl_session_tickets on; ssl_session_cache off; ssl_protocols TLSv1.2 TLSv1.3;',
            4096,
            { ssl: true },
          ),
      },
    ],
    scenarios,
    peer: 'node:https',
    pairs: [
      ['netloom (1 loop)', 'node:https'],
      ['netloom (1 loop)', 'nginx (1 worker)'],
    ],
    rounds: args.rounds,
    seconds: args.seconds,
    warmupSeconds: 2,
    notes: [
      'targets: keep-alive >= 2x node:https and >= 0.9x nginx; handshakes >= 0.8x nginx (both OpenSSL-bound)',
      's_time runs one connection at a time: its rates are handshake latency, server and client together',
    ],
  });
}
