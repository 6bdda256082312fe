// engine.updateTls() retires the loop's acceptor but its handshakes in progress stay on it, and
// EventLoop.full() counts only the current acceptor's: right after an update, maxConnections admits a new
// batch of handshakes on top of those still running (each update doubles what stalled clients may hold).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { serveInline } from '../../helpers.ts';
import { TestPki } from '../certs.ts';
import { plain, sleep } from '../support.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const cert = pki.issue('max', ['max.test']);

test('handshakes still running on a retired acceptor count toward maxConnections', async (t) => {
  const tls = { cert: cert.cert, key: cert.key, handshakeTimeout: 1500 };
  const { engine, port } = await serveInline({ onTraffic: (c) => void c.next() }, { maxConnections: 3, tls });
  t.after(() => engine.stop());
  const stalls = [plain(port, '', 2000), plain(port, '', 2000), plain(port, '', 2000)];
  await sleep(100);
  await engine.updateTls(tls); // same settings: a new acceptor
  const before = engine.stats().total.rejected;
  const more = await Promise.all([plain(port, '', 300), plain(port, '', 300), plain(port, '', 300)]);
  const rejected = engine.stats().total.rejected - before;
  await Promise.all(stalls);
  assert.equal(
    rejected,
    3,
    `3 handshakes already run (maxConnections 3), yet ${3 - rejected} more were let in`,
  );
  void more;
});
