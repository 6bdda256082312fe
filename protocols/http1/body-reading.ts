/**
 * Reading a request body whole, as JSON or as a Node.js stream, over any version's zero-copy `pipe`: the
 * HTTP/1.1 and HTTP/2 requests share these, so both bound and fail the same way.
 */
import { Readable } from 'node:stream';
import type { BodyConsumer } from './api.ts';
import { HttpError } from './errors.ts';

/**
 * The whole body in one buffer, bounded by `limit` (413 past it): the buffer grows with the bytes that
 * arrive, never with a declared length, so a head alone pins nothing.
 */
export function collectBody(attach: (consumer: BodyConsumer) => void, limit: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let failed = false;
    attach({
      data(chunk) {
        if (failed) return;
        if (size + chunk.length > limit) {
          failed = true;
          parts.length = 0;
          reject(new HttpError(413, 'body too large'));
          return;
        }
        parts.push(Buffer.from(chunk));
        size += chunk.length;
      },
      end() {
        if (failed) return;
        resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts, size));
      },
      error: reject,
    });
  });
}

/** `body` parsed as JSON; a syntax error is an `HttpError` 400. */
export function parseJsonBody<T>(body: Buffer): T {
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}

/** The body as a Readable of copied chunks, with backpressure through `pipe`'s pause and `resumeBody`. */
export function bodyStream(req: { pipe(consumer: BodyConsumer): void; resumeBody(): void }): Readable {
  let paused = false;
  const readable = new Readable({
    read() {
      if (paused) {
        paused = false;
        req.resumeBody();
      }
    },
  });
  req.pipe({
    data(chunk) {
      if (!readable.push(Buffer.from(chunk))) {
        paused = true;
        return false;
      }
      return true;
    },
    end() {
      readable.push(null);
    },
    error(err) {
      readable.destroy(err);
    },
  });
  return readable;
}
