// Filters for the h2-review tests.
import { defineFilter } from 'netloom/gateway';
import { z } from 'zod';

/**
 * onUpstreamRequest: adds `x-tenant: <query>`; when the query has `bad`, also a header whose name is not a
 * token (a buggy filter: the request fails 500, as documented).
 */
export const tenantHeader = defineFilter({
  name: 'tenant-header',
  settings: z.object({}).strict(),
  create() {
    return {
      onUpstreamRequest(_ctx, head) {
        const q = head.target.split('?')[1] ?? '';
        head.headers.push(['x-tenant', `tenant-${q}`]);
        if (q.includes('bad')) head.headers.push(['bad name', 'v']);
      },
    };
  },
});
