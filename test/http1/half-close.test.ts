// A client's FIN while its request is answered: `clientHalfClose: 'serve'` (the default) answers it and the
// complete requests before the FIN; `'abort'` (the gateway's choice, as node:http and nginx do) abandons the
// request: req.signal aborts with ERR_HTTP_CLOSED, nothing is sent, and the connection closes at once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { get, responses, script, startHttp } from './support.ts';

function slowHandler(seen: string[]) {
  return async (req: import('netloom/http1').Request, res: import('netloom/http1').Response) => {
    req.signal.addEventListener('abort', () =>
      seen.push(`abort ${(req.signal.reason as { code?: string }).code}`),
    );
    await new Promise((r) => setTimeout(r, 150));
    if (!res.closed) res.end(`done ${req.path}`);
  };
}

test("clientHalfClose 'serve': a request and the pipelined one before the FIN are answered", async (t) => {
  const seen: string[] = [];
  const { engine, port } = await startHttp(slowHandler(seen));
  t.after(() => engine.stop());
  const r = await script(port, [get('/a') + get('/b'), 'FIN'], 1500);
  assert.deepEqual(
    responses(r.text).map((x) => x.body),
    ['done /a', 'done /b'],
  );
  assert.equal(r.closed, true);
  assert.deepEqual(seen, []);
});

test("clientHalfClose 'abort': the FIN abandons the request and closes at once", async (t) => {
  const seen: string[] = [];
  const { engine, port } = await startHttp(slowHandler(seen), { clientHalfClose: 'abort' });
  t.after(() => engine.stop());
  const r = await script(port, [get('/a'), 20, 'FIN'], 1500);
  assert.equal(r.text, '');
  assert.equal(r.closed, true);
  assert.ok(r.elapsed < 140, `closed after ${r.elapsed} ms, before the handler would answer`);
  assert.deepEqual(seen, ['abort ERR_HTTP_CLOSED']);
});

test('clientHalfClose: a value other than serve or abort is ERR_NETLOOM_OPTION', async () => {
  const { server } = await import('netloom/http1');
  assert.throws(() => server(() => {}, { clientHalfClose: 'maybe' as 'serve' }), {
    code: 'ERR_NETLOOM_OPTION',
  });
});
