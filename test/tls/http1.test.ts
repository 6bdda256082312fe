// The HTTP/1.1 server over TLS runs the same handler: keep-alive and pipelining through curl and node:tls,
// req.secure, and a request body streamed in.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import tls from 'node:tls';
import { serve } from 'netloom';
import { server } from 'netloom/http1';
import { responses } from '../http1/support.ts';
import { TestPki } from './certs.ts';
import { run } from './support.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('web', ['web.test']);

const app = server(async (req, res) => {
  const body = req.method === 'POST' ? (await req.body()).length : 0;
  res.json({ path: req.path, secure: req.secure, body });
});

test('curl over HTTPS: two requests on one connection (ALPN http/1.1), req.secure', async (t) => {
  const engine = await serve(app, { tls: { cert: cert.cert, key: cert.key, alpnProtocols: ['http/1.1'] } });
  t.after(() => engine.stop());
  const url = `https://web.test:${engine.port}`;
  const r = await run('curl', [
    '-s',
    '--cacert',
    pki.ca.certFile,
    '--resolve',
    `web.test:${engine.port}:127.0.0.1`,
    `${url}/a`,
    '-w',
    '\\n%{num_connects}\\n',
    '--next',
    '--cacert',
    pki.ca.certFile,
    '--resolve',
    `web.test:${engine.port}:127.0.0.1`,
    '--data-binary',
    'x'.repeat(5000),
    `${url}/b`,
    '-w',
    '\\n%{num_connects}\\n',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.deepEqual(JSON.parse(lines[0]!), { path: '/a', secure: true, body: 0 });
  assert.equal(lines[1], '1');
  assert.deepEqual(JSON.parse(lines[2]!), { path: '/b', secure: true, body: 5000 });
  assert.equal(lines[3], '0', 'the second request reused the connection');
});

test('pipelined requests over TLS are answered in order', async (t) => {
  const engine = await serve(app, { tls: { cert: cert.cert, key: cert.key } });
  t.after(() => engine.stop());
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = tls.connect(
      { port: engine.port, host: '127.0.0.1', servername: 'web.test', ca: pki.ca.cert },
      () => {
        let reqs = '';
        for (let i = 0; i < 10; i++)
          reqs += `GET /p${i} HTTP/1.1\r\nHost: web.test\r\n${i === 9 ? 'Connection: close\r\n' : ''}\r\n`;
        s.write(reqs);
      },
    );
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    s.on('error', reject);
  });
  const got = responses(text).map((r) => (JSON.parse(r.body) as { path: string }).path);
  assert.deepEqual(
    got,
    Array.from({ length: 10 }, (_, i) => `/p${i}`),
  );
});

test('req.secure is false on plain TCP', async (t) => {
  const engine = await serve(app, {});
  t.after(() => engine.stop());
  const r = await run('curl', ['-s', `http://127.0.0.1:${engine.port}/plain`]);
  assert.deepEqual(JSON.parse(r.stdout), { path: '/plain', secure: false, body: 0 });
});
