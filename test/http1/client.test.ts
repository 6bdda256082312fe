// The HTTP/1.1 client codec: ClientConnection.request writes the request line, Host, fields and framing;
// writeBody/endBody frame the body (chunks and trailers); anything that could break the head is refused.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Conn, Engine, EventLoop } from 'netloom';
import { ClientConnection, clientHandler, type HttpError, type ResponseSink } from 'netloom/http1';
import { serveInline } from '../helpers.ts';

let engine: Engine;
let loop: EventLoop;
before(async () => {
  ({ engine, loop } = await serveInline({}));
});
after(() => engine.stop());

function client() {
  const pipe = loop.pipe(clientHandler({}));
  const c = new ClientConnection(pipe.conn as Conn<ClientConnection>);
  (pipe.conn as Conn<ClientConnection>).context = c;
  return { pipe, client: c };
}

const events: string[] = [];
const sink: ResponseSink = {
  onHead: (r) => events.push(`head ${r.status} ${r.header('x-up')}`),
  onBody: (chunk) => void events.push(`body ${chunk.toString()}`),
  onEnd: () => events.push('end'),
  onError: (err) => events.push(`error ${(err as HttpError).code}`),
};

test('a GET: request line, Host and fields; the response goes to the sink', () => {
  const { pipe, client: c } = client();
  events.length = 0;
  c.request(
    { method: 'GET', target: '/a?b=1', host: 'up:80', headers: [['accept', '*/*']], framing: 'none' },
    sink,
  );
  assert.equal(pipe.take().toString(), 'GET /a?b=1 HTTP/1.1\r\nhost: up:80\r\naccept: */*\r\n\r\n');
  pipe.read(Buffer.from('HTTP/1.1 200 OK\r\nx-up: yes\r\ncontent-length: 2\r\n\r\nhi'));
  assert.deepEqual(events, ['head 200 yes', 'body hi', 'end']);
  assert.equal(c.reusable, true);
  pipe.dispose();
});

test('a body with a length, and a chunked one with trailers, framed by the codec', () => {
  const a = client();
  a.client.request({ method: 'PUT', target: '/x', host: 'h', framing: 5 }, sink);
  a.client.writeBody(Buffer.from('hel'));
  a.client.writeBody(Buffer.from('lo'));
  a.client.endBody();
  assert.equal(a.pipe.take().toString(), 'PUT /x HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\nhello');
  a.pipe.dispose();
  const b = client();
  b.client.request(
    {
      method: 'POST',
      target: '/y',
      host: 'h',
      raw: { size: 9, copy: (buf, p) => p + buf.write('x-r: 1\r\n', p, 'latin1') },
      framing: 'chunked',
    },
    sink,
  );
  b.client.writeBody(Buffer.alloc(26, 0x61));
  b.client.endBody([['x-sum', 'abc']]);
  assert.equal(
    b.pipe.take().toString(),
    `POST /y HTTP/1.1\r\nhost: h\r\nx-r: 1\r\ntransfer-encoding: chunked\r\n\r\n1a\r\n${'a'.repeat(26)}\r\n0\r\nx-sum: abc\r\n\r\n`,
  );
  b.pipe.dispose();
});

for (const [name, req] of [
  ['a method that is not a token', { method: 'GET /x', target: '/', host: 'h' }],
  ['a target with a space', { method: 'GET', target: '/a b', host: 'h' }],
  ['a target with CR LF', { method: 'GET', target: '/a\r\nX: 1', host: 'h' }],
  ['a target above U+00FF', { method: 'GET', target: '/€', host: 'h' }],
  ['a Host with CR LF', { method: 'GET', target: '/', host: 'h\r\nX: 1' }],
  ['a field name with a colon', { method: 'GET', target: '/', host: 'h', headers: [['x:y', '1']] }],
  ['a field value with LF', { method: 'GET', target: '/', host: 'h', headers: [['x', 'a\nb']] }],
] as const) {
  test(`${name} is refused with ERR_HTTP_INVALID_REQUEST and nothing is sent`, () => {
    const { pipe, client: c } = client();
    assert.throws(
      () => c.request({ framing: 'none', ...req } as Parameters<ClientConnection['request']>[0], sink),
      (err: HttpError) => err.code === 'ERR_HTTP_INVALID_REQUEST',
    );
    assert.equal(pipe.take().length, 0);
    assert.equal(c.busy, false);
    pipe.dispose();
  });
}

test('a trailer that could break the message is refused; nothing of the trailers is sent', () => {
  const { pipe, client: c } = client();
  c.request({ method: 'POST', target: '/', host: 'h', framing: 'chunked' }, sink);
  c.writeBody(Buffer.from('x'));
  pipe.take();
  assert.throws(
    () => c.endBody([['x-t', 'a\r\nb']]),
    (err: HttpError) => err.code === 'ERR_HTTP_INVALID_REQUEST',
  );
  assert.equal(pipe.take().length, 0);
  pipe.dispose();
});
