// A plugin for the mirror review: `refuse-upstream` throws in onUpstreamRequest (a signing filter that
// cannot sign), so the gateway answers 500 and sends nothing upstream.
import { defineFilter } from 'netloom/gateway';
import { z } from 'zod';

export const refuseUpstream = defineFilter({
  name: 'refuse-upstream',
  settings: z.object({}).strict(),
  create: () => ({
    onUpstreamRequest() {
      throw new Error('cannot sign this request');
    },
  }),
});

/** `set-header`: sets `field` to `value` on the upstream request in onRequest (ctx.setHeader). */
export const setHeader = defineFilter({
  name: 'set-header',
  settings: z.object({ field: z.string(), value: z.string() }).strict(),
  create: (settings) => ({
    onRequest(ctx) {
      ctx.setHeader(settings.field, settings.value);
    },
  }),
});
