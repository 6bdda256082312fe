// Echoes every accepted request back as JSON: method, target, headers and trailers in received order, and
// the decoded body in base64. Strings are byte strings (one JSON character per received byte, like node's
// rawHeaders), so a client can compare exactly what the parser saw.
import type { EventLoop } from 'netloom';
import { server } from 'netloom/http1';

export default function create(loop: EventLoop) {
  const { requireHost = true, maxBodySize = 16 * 1024 * 1024 } = (loop.data ?? {}) as {
    requireHost?: boolean;
    maxBodySize?: number;
  };
  return server(
    async (req, res) => {
      const body = await req.body();
      res.json({
        method: req.method,
        target: req.target,
        headers: req.headerPairs(),
        trailers: req.trailers,
        body: body.toString('base64'),
      });
    },
    { requireHost, maxBodySize },
  );
}
