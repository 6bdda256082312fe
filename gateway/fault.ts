/**
 * The `fault` stock filter, Envoy's fault filter in spirit: delays and aborts injected into a route's
 * requests, to rehearse an upstream's slowness or failure. Each applies to a percentage of requests, or to
 * requests carrying a chosen header (`when`), or to those that do both. A fault is switched on or off by
 * the configuration (`enabled`) and at runtime through the admin endpoint (`POST /faults`), which every
 * loop reads from shared memory: the switch outlives reloads until it is reset.
 */
import { z } from 'zod';
import { headerName } from './config-fields.ts';
import { defineFilter, type RequestContext } from './filter.ts';
import type { SharedState } from './shared-state.ts';

const percent = z.number().min(0).max(100);

const settings = z
  .object({
    /** Whether the fault is on (the admin endpoint can switch it at runtime). Default on. */
    enabled: z.boolean().default(true),
    /** Only requests with this header (and, if given, this value) are candidates. */
    when: z.object({ header: headerName, value: z.string().optional() }).strict().optional(),
    /** Holds candidates for `ms` before they go on. */
    delay: z
      .object({ ms: z.number().int().min(1).max(600_000), percent: percent.default(100) })
      .strict()
      .optional(),
    /** Answers candidates with `status` instead of the upstream. */
    abort: z
      .object({
        status: z.number().int().min(200).max(599),
        percent: percent.default(100),
        body: z.string().optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((s) => s.delay !== undefined || s.abort !== undefined, 'a fault needs a delay or an abort');

/** The runtime switch of a route's faults: 0 as configured, 1 forced on, 2 forced off. */
export type FaultSwitch = 'config' | 'on' | 'off';
const SWITCH_VALUES: Record<FaultSwitch, number> = { config: 0, on: 1, off: 2 };

/** Where a route's fault switch lives in the gateway's shared memory. */
function switchName(route: string): string {
  return `fault|${route}|switch`;
}

/** Sets a route's fault switch (the admin endpoint, main thread); every loop sees it at its next request. */
export function setFaultSwitch(shared: SharedState, route: string, to: FaultSwitch): void {
  const counter = shared.counter(switchName(route));
  counter.add(SWITCH_VALUES[to] - counter.get()); // one writer: the main thread
}

/** A route's fault switch. */
export function faultSwitch(shared: SharedState, route: string): FaultSwitch {
  const v = shared.counter(switchName(route)).get();
  return v === 1 ? 'on' : v === 2 ? 'off' : 'config';
}

/** `fault`: see the module comment. */
export const fault = defineFilter({
  name: 'fault',
  settings,
  create(s, setup) {
    const loop = setup.loop;
    const override = setup.shared.counter(switchName(setup.route));
    const candidate = (ctx: RequestContext): boolean => {
      if (s.when === undefined) return true;
      const value = ctx.req.header(s.when.header);
      return value !== undefined && (s.when.value === undefined || value === s.when.value);
    };
    const abort = (ctx: RequestContext): boolean => {
      const a = s.abort!;
      ctx.respond(a.status, a.body ?? { error: 'fault injected', status: a.status, route: setup.route });
      return false;
    };
    return {
      onRequest(ctx) {
        const v = override.get();
        if (v === 2 || (v === 0 && !s.enabled) || !candidate(ctx)) return undefined;
        const aborts = s.abort !== undefined && Math.random() * 100 < s.abort.percent;
        if (s.delay !== undefined && Math.random() * 100 < s.delay.percent) {
          const ms = s.delay.ms;
          return new Promise<boolean | undefined>((resolve) => {
            const timer = loop.after(ms, () => resolve(aborts ? abort(ctx) : undefined));
            // A client that leaves while held frees its timer (the call ends on its own).
            ctx.signal.addEventListener('abort', () => {
              timer.cancel();
              resolve(undefined);
            });
          });
        }
        return aborts ? abort(ctx) : undefined;
      },
    };
  },
});
