/** Field types the configuration schemas share (config.ts and the feature schemas beside it). */
import { z } from 'zod';

/** Milliseconds, up to what a Node timer takes (a longer one would fire at once: setInterval clamps it to 1). */
export const duration = z
  .number()
  .int()
  .nonnegative()
  .max(2_147_483_647, 'at most 2147483647 ms (about 24.8 days)');
export const headerName = z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'not a valid header name');
export const headerValue = z
  .string()
  .regex(/^[\t\x20-\x7e\x80-\xff]*$/, 'invalid character in a header value');

/** A record keyed by header names, each key checked with the same message as elsewhere. */
export function headerRecord<V extends z.ZodType>(value: V) {
  return z.record(z.string(), value).superRefine((obj, ctx) => {
    for (const key of Object.keys(obj)) {
      if (!headerName.safeParse(key).success)
        ctx.addIssue({ code: 'custom', path: [key], message: 'not a valid header name' });
    }
  });
}
