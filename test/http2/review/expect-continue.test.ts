// `expect: 100-continue` over HTTP/2 (RFC 9110 §10.1.1; node:http2 emits 'continue' on the 1xx HEADERS and
// its users wait for it before sending the body): HTTP/1.1 sends `100 Continue` when the handler starts
// reading the body (exchange.ts attachBody); HTTP/2 never sends an interim HEADERS, so such a client waits
// until requestTimeout answers 408.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test } from 'node:test';
import { startH2 } from '../support.ts';

test('expect: 100-continue gets a 100 once the handler reads the body', async (t) => {
  const s = await startH2(async (req, res) => res.end(`got ${(await req.text()).length}`), {
    requestTimeout: 3000,
  });
  const session = http2.connect(`http://127.0.0.1:${s.port}`);
  session.on('error', () => {});
  t.after(async () => {
    session.destroy();
    await s.engine.stop();
  });
  const result = await new Promise<string>((resolve) => {
    const r = session.request(
      { ':method': 'POST', ':path': '/', expect: '100-continue' },
      { endStream: false },
    );
    const timer = setTimeout(() => resolve('no 100 within 2 s'), 2000);
    r.on('continue', () => {
      clearTimeout(timer);
      r.end('hello');
    });
    let body = '';
    r.setEncoding('utf8');
    r.on('response', (h) => (body += `${h[':status']} `));
    r.on('data', (d) => (body += d));
    r.on('end', () => resolve(body));
    r.on('error', (e) => resolve(String(e)));
  });
  assert.equal(result, '200 got 5');
});
