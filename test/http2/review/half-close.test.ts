// The client half-closes (FIN after its requests, as `printf ... | nc` or a client with shutdown(SHUT_WR)
// does): HTTP/1.1 serves the requests in progress (clientHalfClose: 'serve', the default, which the shared
// ServerOptions carry), HTTP/2 closes at once (Http2Connection.onEof -> close()), so a handler that answers
// after an await never gets its response out, and the option is ignored.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { H2Client, startH2 } from '../support.ts';

test('a request complete before the client half-closed is still answered (clientHalfClose: serve)', async (t) => {
  const s = await startH2(async (_req, res) => {
    await new Promise((r) => setTimeout(r, 50));
    res.end('late');
  });
  const c = await H2Client.connect(s.port);
  t.after(async () => {
    c.close();
    await s.engine.stop();
  });
  c.send(c.headers(1, H2Client.get()));
  c.socket.end(); // FIN: nothing more from the client, it still reads
  const r = await c.response(1, 2000);
  assert.equal(r.body, 'late');
});
