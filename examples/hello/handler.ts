// The hello handler every loop imports: GET / -> "Hello, World!", GET /json -> {"message":"Hello, World!"},
// over HTTP/1.1 and HTTP/2 (prior knowledge on cleartext, ALPN h2 over TLS).
import type { EventLoop } from 'netloom';
import type { RequestHandler } from 'netloom/http1';
import { server } from 'netloom/http2';

const messageSchema = {
  type: 'object',
  properties: { message: { type: 'string' } },
  required: ['message'],
} as const;

const hello: RequestHandler = (req, res) => {
  const path = req.path;
  if (path === '/') {
    res.header('content-type', 'text/plain').end('Hello, World!');
  } else if (path === '/json') {
    res.json({ message: 'Hello, World!' }, messageSchema);
  } else {
    res.status(404).header('content-type', 'text/plain').end('Not Found');
  }
};

/** One server per loop, with the options main.ts passed in `data`. */
export default (loop: EventLoop) =>
  server(hello, {
    keepAliveTimeout: (loop.data as { keepAliveTimeout?: number } | undefined)?.keepAliveTimeout,
  });
