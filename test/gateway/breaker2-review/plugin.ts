// Filters for the breaker2-review tests: sends a request to another upstream when it carries
// `x-switch: NAME`, and keeps what each completion record said (loops: 1, on the test's thread).
import { defineFilter } from 'netloom/gateway';
import { z } from 'zod';

export const seen: {
  route: string;
  upstream: string | null;
  status: number;
  circuit: string | null;
  retries: number;
  retryDenied: boolean;
}[] = [];

export const switchOnHeader = defineFilter({
  name: 'switch-on-header',
  settings: z.object({}).strict(),
  create: () => ({
    onRequest(ctx) {
      const to = ctx.req.header('x-switch');
      if (to !== undefined) ctx.useUpstream(to);
    },
  }),
});

export const keepRecords = defineFilter({
  name: 'keep-records',
  settings: z.object({}).strict(),
  create: () => ({
    onComplete(_ctx, r) {
      seen.push({
        route: r.route,
        upstream: r.upstream,
        status: r.status,
        circuit: r.circuit,
        retries: r.retries,
        retryDenied: r.retryDenied,
      });
    },
  }),
});
