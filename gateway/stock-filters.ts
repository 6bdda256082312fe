/** The filters every gateway knows without plugins. */
import { z } from 'zod';
import { circuitBreaker } from './circuit-breaker.ts';
import { fault } from './fault.ts';
import { defineFilter, FilterRegistry } from './filter.ts';
import { rateLimit } from './rate-limit.ts';

/** `respond`: answers directly, without an upstream (maintenance pages, fixed health answers). */
export const respond = defineFilter({
  name: 'respond',
  settings: z
    .object({
      status: z.number().int().min(200).max(599).default(200),
      body: z.string().default(''),
      contentType: z
        .string()
        .regex(/^[\t\x20-\x7e]*$/, 'invalid character in a header value')
        .default('text/plain; charset=utf-8'),
    })
    .strict(),
  create: ({ status, body, contentType }) => ({
    onRequest(ctx) {
      ctx.res.status(status).header('content-type', contentType).end(body);
      return false;
    },
  }),
});

/** A registry holding the stock filters. */
export function stockFilters(): FilterRegistry {
  const registry = new FilterRegistry();
  registry.add([respond, rateLimit, circuitBreaker, fault], 'netloom (stock)');
  return registry;
}
