// Filters for the review reproductions, written against netloom/gateway alone.
import { BroadcastChannel } from 'node:worker_threads';
import { defineFilter } from 'netloom/gateway';
import { z } from 'zod';

function channel(name: string): BroadcastChannel {
  const c = new BroadcastChannel(name);
  c.unref();
  return c;
}

/** onUpstreamResponse throws (a bug in a user's response filter). */
export const throwOnResponse = defineFilter({
  name: 'throw-on-response',
  settings: z.object({}).strict(),
  create() {
    return {
      onUpstreamResponse() {
        throw new Error('bug in a response filter');
      },
    };
  },
});

/** Posts every completion record and onError failure, and signal aborts, on a channel. */
export const records = defineFilter({
  name: 'records',
  settings: z.object({ channel: z.string(), waitMs: z.number().int().default(0) }).strict(),
  create({ channel: name, waitMs }) {
    const out = channel(name);
    return {
      onRequest(ctx) {
        ctx.signal.addEventListener('abort', () => out.postMessage({ event: 'abort', path: ctx.path }), {
          once: true,
        });
        if (waitMs > 0) return new Promise<void>((r) => setTimeout(r, waitMs));
      },
      onError(ctx, failure) {
        out.postMessage({ event: 'error', path: ctx.path, failure: { ...failure } });
      },
      onComplete(ctx, record) {
        out.postMessage({ event: 'complete', path: ctx.path, record: { ...record } });
      },
    };
  },
});

/** onRequest rejects asynchronously after a delay. */
export const rejectLater = defineFilter({
  name: 'reject-later',
  settings: z.object({ ms: z.number().int().default(50) }).strict(),
  create({ ms }) {
    return {
      onRequest() {
        return new Promise<void>((_, reject) => setTimeout(() => reject(new Error('async failure')), ms));
      },
    };
  },
});

/** Takes from a shared token bucket; answers 429 when empty. */
export const bucket = defineFilter({
  name: 'bucket',
  settings: z.object({ rate: z.number(), burst: z.number() }).strict(),
  create({ rate, burst }, setup) {
    const b = setup.shared.tokenBucket(`bucket:${setup.route}`, rate, burst);
    return {
      onRequest(ctx) {
        if (b.take()) return;
        ctx.respond(429, { available: b.available() });
        return false;
      },
    };
  },
});

/** Takes `n` tokens from a shared bucket and answers with the outcome and what is left. */
export const bucketProbe = defineFilter({
  name: 'bucket-probe',
  settings: z.object({ rate: z.number(), burst: z.number(), n: z.number().default(1) }).strict(),
  create({ rate, burst, n }, setup) {
    const b = setup.shared.tokenBucket(`probe:${setup.route}`, rate, burst);
    return {
      onRequest(ctx) {
        const took = b.take(n);
        ctx.respond(took ? 200 : 429, { took, available: b.available() });
        return false;
      },
    };
  },
});

/** onUpstreamResponse answers the client itself (a filter that replaces an upstream's 5xx with its own page). */
export const respondOnResponse = defineFilter({
  name: 'respond-on-response',
  settings: z.object({}).strict(),
  create() {
    return {
      onUpstreamResponse(ctx) {
        ctx.respond(418, { replaced: true });
      },
    };
  },
});

/** onUpstreamRequest changes the method to the one named in its settings. */
export const methodChanger = defineFilter({
  name: 'method-changer',
  settings: z.object({ to: z.string() }).strict(),
  create({ to }) {
    return {
      onUpstreamRequest(_ctx, head) {
        head.method = to;
      },
    };
  },
});

/** Opens a timer in create and reports when its instance is closed (tag tells versions apart). */
export const closable = defineFilter({
  name: 'closable',
  settings: z.object({ channel: z.string(), tag: z.string() }).strict(),
  create({ channel: name, tag }) {
    const out = channel(name);
    const timer = setInterval(() => {}, 60_000);
    return {
      onComplete(ctx) {
        out.postMessage({ event: 'complete', tag, path: ctx.path });
      },
      close() {
        clearInterval(timer);
        out.postMessage({ event: 'close', tag });
      },
    };
  },
});
