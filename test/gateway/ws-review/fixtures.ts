// Filters for the review tests.
import { defineFilter } from 'netloom/gateway';
import { z } from 'zod';

/** Adds a response header to the upstream's head (name and value as configured). */
export const addResponseHeader = defineFilter({
  name: 'review-add-response-header',
  settings: z.object({ header: z.string(), value: z.string() }),
  create: ({ header, value }) => ({
    onUpstreamResponse(_ctx, head) {
      head.headers.push([header, value]);
    },
  }),
});
