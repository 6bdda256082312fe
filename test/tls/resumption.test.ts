// Session resumption across loops: the ticket keys are made once and shared by every loop, so a session
// from a full handshake on one loop resumes on another (openssl s_client -sess_out, then -sess_in until a
// handshake lands on the other loop); keys rotate on a schedule and tickets sealed with the previous keys
// still resume.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { serve } from 'netloom';
import { TestPki } from './certs.ts';
import { sClient, sleep } from './support.ts';

const HANDLER = new URL('../fixtures/tls-handler.ts', import.meta.url);
const pki = new TestPki();
after(() => pki.cleanup());
const main = pki.issue('main', ['main.test']);

for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
  test(`${version}: a session from loop A resumes on loop B, and the resumptions are counted`, async (t) => {
    const engine = await serve(HANDLER, {
      loops: 2,
      tls: { certFile: main.certFile, keyFile: main.keyFile, maxVersion: version },
    });
    t.after(() => engine.stop());
    const sess = join(pki.dir, `sess-${version}.pem`);
    const first = await sClient(engine.port, ['-servername', 'main.test', '-sess_out', sess]);
    assert.equal(first.session, 'New', first.out);
    const firstLoop = first.answer!.loop;
    let other = null;
    for (let i = 0; i < 60 && other === null; i++) {
      const r = await sClient(engine.port, ['-servername', 'main.test', '-sess_in', sess]);
      assert.equal(r.session, 'Reused', `attempt ${i} on loop ${r.answer?.loop}: not resumed\n${r.out}`);
      assert.equal(r.answer?.resumed, true);
      if (r.answer!.loop !== firstLoop) other = r;
    }
    assert.notEqual(other, null, 'no handshake reached the other loop in 60 tries');
    const stats = engine.stats().total;
    assert.ok(stats.tlsResumed >= 1 && stats.tlsResumed === stats.tlsHandshakes - 1, JSON.stringify(stats));
  });
}

test('after a rotation of the ticket keys, a ticket sealed with the previous keys still resumes', async (t) => {
  // Rotations every 2 s, counted from before serve() (the engine's timer starts when it is made).
  const started = Date.now();
  const engine = await serve(HANDLER, {
    loops: 2,
    tls: { cert: main.cert, key: main.key, ticketKeyRotation: 2000 },
  });
  t.after(() => engine.stop());
  const sess = join(pki.dir, 'sess-rotation.pem');
  assert.equal((await sClient(engine.port, ['-sess_out', sess])).session, 'New');
  assert.ok(Date.now() - started < 1800, 'the first handshake came before the first rotation');
  await sleep(2200 - (Date.now() - started)); // one rotation: the ticket's keys are the previous ones now
  for (let i = 0; i < 6; i++) {
    const r = await sClient(engine.port, ['-sess_in', sess]);
    assert.equal(r.session, 'Reused', `after one rotation, try ${i} on loop ${r.answer?.loop}\n${r.out}`);
  }
  assert.ok(Date.now() - started < 4000, 'the tries came before the second rotation');
});

test('with sessionTickets off, nothing resumes', async (t) => {
  const engine = await serve(HANDLER, {
    loops: 1,
    tls: { cert: main.cert, key: main.key, sessionTickets: false },
  });
  t.after(() => engine.stop());
  const sess = join(pki.dir, 'sess-off.pem');
  await sClient(engine.port, ['-sess_out', sess]);
  const r = await sClient(engine.port, ['-sess_in', sess]);
  assert.equal(r.session, 'New');
  assert.equal(engine.stats().total.tlsResumed, 0);
});
