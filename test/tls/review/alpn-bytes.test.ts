// tls.alpnProtocols is checked in characters (options.ts:211), encoded in bytes (acceptor.ts alpnWire): a name
// of 128 "é" (256 bytes) passes serve(), its length byte wraps to 0, and the first handshake throws from
// new TLSSocket inside a socket 'data' listener: an uncaught exception that ends the process.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { serve } from 'netloom';
import { TestPki } from '../certs.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('a', ['a.test']);

test('an ALPN name over 255 bytes (but not characters) is refused by serve()', async () => {
  let engine: Awaited<ReturnType<typeof serve>> | null = null;
  try {
    await assert.rejects(
      (async () => {
        engine = await serve(
          {},
          { loops: 1, tls: { cert: cert.cert, key: cert.key, alpnProtocols: ['\u00e9'.repeat(128)] } },
        );
      })(),
      { code: 'ERR_NETLOOM_OPTION' },
    );
  } finally {
    await (engine as { stop(): Promise<void> } | null)?.stop();
  }
});
