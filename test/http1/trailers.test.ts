// Response trailers over HTTP/1.1: after a chunked body only; a declared length goes without them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { raw, startHttp } from './support.ts';

test('res.trailer after a chunked body: the last chunk carries the fields', async (t) => {
  const { engine, port } = await startHttp((_req, res) => {
    res.write('part');
    res.trailer('x-checksum', 'abc').trailer('grpc-status', '0');
    res.end();
  });
  t.after(() => engine.stop());
  const r = await raw(port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  assert.match(r.text, /transfer-encoding: chunked\r\n/);
  assert.ok(
    r.text.endsWith('4\r\npart\r\n0\r\nx-checksum: abc\r\ngrpc-status: 0\r\n\r\n'),
    JSON.stringify(r.text),
  );
});

test('res.trailer with a declared length: dropped, the framing intact', async (t) => {
  const { engine, port } = await startHttp((_req, res) => {
    res.trailer('x-checksum', 'abc').end('whole');
  });
  t.after(() => engine.stop());
  const r = await raw(port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  assert.match(r.text, /content-length: 5\r\n/);
  assert.ok(r.text.endsWith('\r\n\r\nwhole'));
});

test('res.trailer refuses a value with CR/LF', async (t) => {
  let error = '';
  const { engine, port } = await startHttp((_req, res) => {
    try {
      res.trailer('x-a', 'a\r\nb: c');
    } catch (err) {
      error = (err as { code: string }).code;
    }
    res.end('ok');
  });
  t.after(() => engine.stop());
  await raw(port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  assert.equal(error, 'ERR_HTTP_INVALID_HEADER');
});
