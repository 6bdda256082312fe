import type { EventLoop } from '../core/index.ts';
import type { Request, Response } from '../protocols/http1/index.ts';
import type { RouteRuntime } from './runtime.ts';

/** What a filter sees of one request on its way through a route. */
export interface FilterContext {
  readonly req: Request;
  readonly res: Response;
  readonly route: RouteRuntime;
  /** `:name` path parameters of the matched route, or null. */
  readonly params: Record<string, string> | null;
  readonly loop: EventLoop;
  /** Request headers to add upstream (filters may push more). */
  readonly upstreamHeaders: [string, string][];
}

/** Response headers on their way to the client; a filter may change them before they are sent. */
export interface ResponseHeaders {
  status: number;
  /** [name, value] pairs as they will be sent (names as the upstream sent them). */
  readonly headers: [string, string][];
}

/**
 * A stage of a route's filter chain (like Envoy's HTTP filters). Filters run in order before the proxy;
 * any of them may answer the request itself (rate limits, auth, fault injection, direct responses).
 * Every method runs on the loop's thread.
 */
export interface Filter {
  readonly name: string;
  /**
   * Before proxying. Return true to go on, false when the filter has answered (it must have ended `res`).
   * May be async.
   */
  onRequest?(ctx: FilterContext): boolean | Promise<boolean>;
  /** On the upstream's response head, before it is sent to the client. */
  onResponse?(ctx: FilterContext, response: ResponseHeaders): void;
}

/** Builds a filter from its configuration entry (`{ name, ...settings }`), once per route per reload. */
export type FilterFactory = (settings: Readonly<Record<string, unknown>>, loop: EventLoop) => Filter;

/** Built-in filters; users add theirs with `registerFilter` in their handler module. */
const registry = new Map<string, FilterFactory>();

/** Makes a filter available to configurations under `name` (call it in the module every loop imports). */
export function registerFilter(name: string, factory: FilterFactory): void {
  registry.set(name, factory);
}

/** The factory registered under `name`, or undefined. */
export function filterFactory(name: string): FilterFactory | undefined {
  return registry.get(name);
}

/** Names of every registered filter (for configuration validation). */
export function filterNames(): string[] {
  return [...registry.keys()];
}

// `respond`: answers directly, without an upstream (maintenance pages, fixed health answers).
registerFilter('respond', (settings) => {
  const status = typeof settings.status === 'number' ? settings.status : 200;
  const body = typeof settings.body === 'string' ? settings.body : '';
  const contentType =
    typeof settings.contentType === 'string' ? settings.contentType : 'text/plain; charset=utf-8';
  return {
    name: 'respond',
    onRequest(ctx) {
      ctx.res.status(status).header('content-type', contentType).end(body);
      return false;
    },
  };
});
