// A custom gateway filter written against the public export only: requests must carry one of the route's
// API keys. The key is checked in constant time, removed before the request goes upstream (the upstream
// never sees the credential), and every refusal counts in a counter all loops share, exposed to the
// upstream as a header so a test (or a dashboard) can read it.
//
//   netloom-gateway --config examples/gateway-plugin/gateway.yaml
import { timingSafeEqual } from 'node:crypto';
import { defineFilter } from 'netloom/gateway';
import { z } from 'zod';

function sameKey(given: string, keys: readonly Buffer[]): boolean {
  const g = Buffer.from(given);
  let found = false;
  // Every key is compared (no early exit): the time taken says nothing about which key nearly matched.
  for (const k of keys) if (k.length === g.length && timingSafeEqual(k, g)) found = true;
  return found;
}

export const apiKey = defineFilter({
  name: 'api-key',
  settings: z
    .object({
      /** The header carrying the key. */
      header: z
        .string()
        .regex(/^[A-Za-z0-9-]+$/, 'a header name')
        .default('x-api-key'),
      /** Accepted keys (at least 16 characters each). */
      keys: z.array(z.string().min(16, 'an API key has at least 16 characters')).min(1),
      /** The realm named in the 401's WWW-Authenticate. */
      realm: z
        .string()
        .regex(/^[\x20-\x21\x23-\x7e]*$/, 'printable ASCII without quotes')
        .default('api'),
    })
    .strict(),
  create({ header, keys, realm }, { shared, route }) {
    const accepted = keys.map((k) => Buffer.from(k));
    const refused = shared.counter(`api-key:refused:${route}`);
    return {
      onRequest(ctx) {
        const given = ctx.req.header(header);
        if (given !== undefined && sameKey(given, accepted)) {
          ctx.removeHeader(header);
          ctx.setHeader('x-api-key-refusals', String(refused.get()));
          return;
        }
        refused.add();
        ctx.respond(
          401,
          { error: given === undefined ? `missing ${header}` : `unknown ${header}` },
          { 'www-authenticate': `ApiKey realm="${realm}"` },
        );
        return false;
      },
    };
  },
});
