/**
 * Filters: the stages a route's requests go through, defined by users with {@link defineFilter} in a plugin
 * module that the main thread and every loop import. The main thread validates each filter's settings (a zod
 * schema) with the rest of the configuration, so a bad setting or an unknown filter is a configuration error
 * named by its path, never a failure inside one loop.
 *
 * The stages of a proxied request, in order (fastify's hooks and Envoy's filters in spirit):
 * `onRequest` (may answer) -> upstream selection -> `onUpstreamRequest` (the head about to go up) ->
 * `onUpstreamResponse` (the upstream's head on its way down) -> `onComplete` (always, with the outcome);
 * `onError` when the request fails before a response reached the client.
 */
import type { ZodType, z } from 'zod';
import type { EventLoop } from '../core/index.ts';
import type { Request, Response } from '../protocols/http1/index.ts';
import type { CompletionRecord } from './completion.ts';
import type { SharedState } from './shared-state.ts';

const BRAND = Symbol.for('netloom.filter-definition');

/** A filter as its plugin module declares it. */
export interface FilterDefinition<S extends ZodType = ZodType> {
  /** The name routes use (`filters: [{ name, ...settings }]`): a unique token. */
  readonly name: string;
  /** The settings' schema; a route's entry (without `name`) must parse with it. */
  readonly settings: S;
  /**
   * Makes the filter for one route on one loop (on the loop's thread), once per configuration version that
   * has it. `settings` are parsed (defaults applied).
   */
  create(settings: z.output<S>, setup: FilterSetup): FilterInstance;
  /**
   * The upstreams an entry's settings name, by their settings path (`{ 'fallback.upstream': 'degraded' }`):
   * the configuration is refused when one does not exist, at that path.
   */
  upstreamsOf?(settings: z.output<S>): Record<string, string>;
}

/** What `create` gets besides the settings. */
export interface FilterSetup {
  /** The loop the filter runs on (its thread). */
  readonly loop: EventLoop;
  /** The route the instance serves. */
  readonly route: string;
  /**
   * Which entry of this filter the instance is on its route: 0 for the first `{ name }` of its kind, 1 for
   * a second one, and so on (keep state apart per entry; `local` is shared by a route's entries of one name).
   */
  readonly occurrence: number;
  /**
   * State of this filter on this loop that outlives reloads, one map per filter name and route: counters,
   * caches, connections. Loop thread only.
   */
  readonly local: Map<string, unknown>;
  /** Memory every loop of the gateway shares (one budget across loops: counters, token buckets). */
  readonly shared: SharedState;
}

/** One route's instance of a filter; every method runs on the loop's thread. */
export interface FilterInstance {
  /**
   * Before an upstream is chosen. Return false once the filter has answered (ended `ctx.res`, for instance
   * with `ctx.respond`); anything else goes on. May be async (the request then waits for it).
   */
  onRequest?(ctx: RequestContext): boolean | void | Promise<boolean | void>;
  /**
   * The upstream request's head, as strings, right before it is written (having this hook makes the route
   * build that head as strings instead of copying the client's field lines as bytes).
   */
  onUpstreamRequest?(ctx: RequestContext, head: UpstreamRequestHead): void;
  /** The upstream response's head on its way to the client (as strings, for routes with this hook). */
  onUpstreamResponse?(ctx: RequestContext, head: ResponseHead): void;
  /** The request is over, whichever way: the completion record says how. */
  onComplete?(ctx: RequestContext, record: CompletionRecord): void;
  /**
   * The request failed before a response reached the client (no healthy target, a timeout, a connect
   * failure, the client leaving). Return false after answering `ctx.res` yourself; else the gateway answers.
   */
  onError?(ctx: RequestContext, error: GatewayFailure): boolean | void;
  /**
   * No request will use this instance again: its version was replaced by a reload and the requests in flight
   * on it have completed, a prepared version was rolled back, or the loop stops. Release what `create` opened
   * (timers, sockets). Called once, on the loop's thread; a throw is logged.
   */
  close?(): void;
}

/** Why a request failed before an answer reached the client. */
export interface GatewayFailure {
  /** A stable kind: see {@link CompletionRecord.error}. */
  readonly kind: string;
  /** The status the gateway answers with unless a filter does. */
  readonly status: number;
  readonly message: string;
}

/** One request on its way through a route's filters. */
export interface RequestContext {
  readonly req: Request;
  readonly res: Response;
  /** The route's name and business domain. */
  readonly route: { readonly name: string; readonly domain: string };
  /** The upstream the request goes to: the route's, or the one its traffic rules chose. */
  readonly upstreamName: string;
  /**
   * Sends the request to another upstream of the configuration (a degraded fallback, say); `onRequest`
   * only. An unknown name, or a call after `onRequest`, throws `ERR_GATEWAY_FILTER_UPSTREAM`.
   */
  useUpstream(name: string): void;
  /** `:name` path parameters of the matched route, or null. */
  readonly params: Record<string, string> | null;
  /** The normalised path the route matched and the upstream receives (before the route's rewrite). */
  readonly path: string;
  readonly loop: EventLoop;
  /** Aborted when the client goes away (or the server answered in the handler's place). */
  readonly signal: AbortSignal;
  /** What this request did so far; complete in `onComplete`. */
  readonly record: CompletionRecord;
  /**
   * Sets a field of the upstream request, replacing the client's (and the route's) values of it. Fields the
   * gateway frames or writes itself (Content-Length, Transfer-Encoding, Host, hop-by-hop fields) throw
   * `ERR_GATEWAY_FILTER_HEADER`.
   */
  setHeader(name: string, value: string): void;
  /** Adds a value of a field to the upstream request (after the client's). Same rules as `setHeader`. */
  appendHeader(name: string, value: string): void;
  /** Removes a field from the upstream request. */
  removeHeader(name: string): void;
  /** Answers the request (a JSON body for an object, text for a string); return false from `onRequest` after. */
  respond(status: number, body?: string | object, headers?: Readonly<Record<string, string>>): void;
}

/** The upstream request head as strings, for `onUpstreamRequest`. */
export interface UpstreamRequestHead {
  method: string;
  /** Path and query, origin-form. */
  target: string;
  /** Fields as they will be sent (after hop-by-hop removal and the route's rules); framing fields excluded. */
  readonly headers: [string, string][];
}

/** A response head on its way to the client, for `onUpstreamResponse`. */
export interface ResponseHead {
  status: number;
  /** [name, value] pairs as they will be sent (names as the upstream sent them). */
  readonly headers: [string, string][];
}

/**
 * Declares a filter. Export what it returns from a plugin module (named in the configuration's `plugins`
 * or passed to `startGateway({ plugins })`); every export that is a filter definition is registered.
 *
 * @example
 * export const apiKey = defineFilter({
 *   name: 'api-key',
 *   settings: z.object({ header: z.string().default('x-api-key'), keys: z.array(z.string()).min(1) }),
 *   create: ({ header, keys }) => ({
 *     onRequest(ctx) {
 *       if (keys.includes(ctx.req.header(header) ?? '')) return;
 *       ctx.respond(401, { error: 'missing or unknown API key' });
 *       return false;
 *     },
 *   }),
 * });
 */
export function defineFilter<S extends ZodType>(definition: FilterDefinition<S>): FilterDefinition<S> {
  if (typeof definition?.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(definition.name))
    throw new TypeError(`a filter's name must be a token of letters, digits, ".", "_" or "-"`);
  if (typeof definition.create !== 'function')
    throw new TypeError(`filter ${definition.name} has no create()`);
  if (typeof (definition.settings as { safeParse?: unknown })?.safeParse !== 'function')
    throw new TypeError(`filter ${definition.name}: settings must be a zod schema`);
  return Object.freeze({ ...definition, [BRAND]: true }) as FilterDefinition<S>;
}

/** Whether `value` came from {@link defineFilter}. */
export function isFilterDefinition(value: unknown): value is FilterDefinition {
  return typeof value === 'object' && value !== null && (value as { [BRAND]?: true })[BRAND] === true;
}

/** The filters a gateway knows: the stock ones and its plugins', each name once. */
export class FilterRegistry {
  private readonly byName = new Map<string, { definition: FilterDefinition; origin: string }>();

  /** Adds definitions from `origin` (a module, or "stock"); a name defined twice is a configuration error. */
  add(definitions: Iterable<FilterDefinition>, origin: string): string[] {
    const problems: string[] = [];
    for (const d of definitions) {
      const seen = this.byName.get(d.name);
      if (seen !== undefined) {
        problems.push(`plugins: filter "${d.name}" is defined by both ${seen.origin} and ${origin}`);
        continue;
      }
      this.byName.set(d.name, { definition: d, origin });
    }
    return problems;
  }

  get(name: string): FilterDefinition | undefined {
    return this.byName.get(name)?.definition;
  }

  names(): string[] {
    return [...this.byName.keys()].sort();
  }
}

/** Every filter definition a plugin module exports (default export, named exports, or arrays of them). */
export function definitionsOf(module: Record<string, unknown>): FilterDefinition[] {
  const out: FilterDefinition[] = [];
  const visit = (v: unknown) => {
    if (isFilterDefinition(v)) {
      if (!out.includes(v)) out.push(v);
    } else if (Array.isArray(v)) for (const x of v) visit(x);
  };
  for (const value of Object.values(module)) visit(value);
  return out;
}
