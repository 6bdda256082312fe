// conn.pause() inside onTraffic on a TLS connection: a single TCP read carrying several TLS records must not
// run onTraffic again until resume() (the plain TCP path honours this; the old `data` path did too).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import tls from 'node:tls';
import type { Conn } from 'netloom';
import { serveInline } from '../../helpers.ts';
import { TestPki } from '../certs.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('p', ['p.test']);

test('TLS: no onTraffic while paused (records decrypted after pause)', async (t) => {
  const whilePaused: number[] = [];
  let total = 0;
  let paused = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const { engine, port } = await serveInline(
    {
      onTraffic(c: Conn) {
        const n = c.next().length;
        total += n;
        if (paused) whilePaused.push(n);
        if (!paused && total < 200_000) {
          paused = true;
          c.pause();
          setTimeout(() => {
            paused = false;
            c.resume();
          }, 200);
        }
        if (total >= 200_000) resolveDone();
      },
    },
    { tls: { cert: cert.cert, key: cert.key } },
  );
  t.after(() => engine.stop());
  const s = tls.connect({ port, host: '127.0.0.1', servername: 'p.test', ca: pki.ca.cert }, () => {
    s.write(Buffer.alloc(200_000, 0x61)); // 13 records, one write: many records per TCP read
  });
  s.on('error', () => {});
  await done;
  s.destroy();
  assert.equal(total, 200_000);
  assert.deepEqual(whilePaused, [], `onTraffic ran ${whilePaused.length} times while paused`);
});
