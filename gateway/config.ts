import { readFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { parseAddress } from '../core/index.ts';
import { duration, headerName, headerRecord, headerValue } from './config-fields.ts';
import { discoverySettings } from './discovery.ts';
import { definitionsOf, type FilterRegistry } from './filter.ts';
import { FORWARDING, HOP_BY_HOP } from './hop-by-hop.ts';
import { mirrorSettings } from './mirror.ts';
import { retryBudgetSettings } from './retry-budget.ts';
import { tracingSettings } from './span.ts';
import { stockFilters } from './stock-filters.ts';
import { listenerTls, splitScheme, upstreamTls } from './tls-config.ts';
import { trafficSettings } from './traffic.ts';

/**
 * The gateway's declarative configuration: listeners, an admin endpoint, upstreams, routes and the plugin
 * modules that define filters. Validated with a schema; every problem is reported with the path of the bad
 * field (`routes.2.match.path: ...`), filter settings included (each filter's own schema).
 */

const ADDRESS_FORM = /^((tcp[46]?):\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$|^unix:\/\/.+$/;
/** An address a loop can listen on or dial: the engine's own parser decides (ports up to 65535). */
const address = z
  .string()
  .regex(ADDRESS_FORM, 'not an address (host:port)')
  .superRefine((a, ctx) => {
    if (!ADDRESS_FORM.test(a)) return;
    try {
      parseAddress(a);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });
/** A path that goes into a request line as it is: `/` and visible ASCII (no SP, CR, LF, no U+0100 and up). */
const requestPath = z
  .string()
  .startsWith('/', 'a path starts with /')
  .regex(/^[\x21-\x7e]*$/, 'a path is visible ASCII (no spaces, control or non-ASCII characters)');

/** A path a rewrite produces: the client's query is appended to it, so it has none of its own (nor `#`). */
const rewritePath = requestPath.regex(
  /^[^?#]*$/,
  "a rewritten path has no '?' or '#' (the client's query is kept)",
);

/** A target: an address, `https://` before it for TLS (and `http://`, which changes nothing). */
const targetAddress = z.string().superRefine((a, ctx) => {
  const r = address.safeParse(splitScheme(a).address);
  if (!r.success)
    for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', message: issue.message });
});

const headerRules = z
  .object({
    add: headerRecord(headerValue).default({}),
    remove: z.array(headerName).default([]),
  })
  .strict();

const target = z
  .object({
    address: targetAddress.describe('host:port of the target, https://host:port for TLS'),
    weight: z.number().int().min(1).max(1000).default(1),
  })
  .strict();

const healthCheck = z
  .object({
    path: requestPath.default('/health'),
    interval: duration.min(10).default(5000),
    timeout: duration.min(1).default(2000),
    healthyThreshold: z.number().int().min(1).default(2),
    unhealthyThreshold: z.number().int().min(1).default(3),
  })
  .strict();

const POOL_DEFAULTS = {
  maxConnections: 256,
  maxIdle: 256,
  // Below the keep-alive timeouts upstreams commonly use (node:http's is 5 s), so the gateway closes an idle
  // connection before the upstream does and rarely sends a request into one that is closing.
  idleTimeout: 4_000,
  connectTimeout: 2_000,
  queueTimeout: 5_000,
  maxQueue: 1024,
};

const PASSIVE_DEFAULTS = {
  consecutiveFailures: 5,
  ejectTime: 10_000,
  statuses: [] as number[],
  maxEjectionPercent: 10,
};

/** A route, domain or upstream name: any text but NUL (names key metric series, where NUL separates them). */
const configName = z
  .string()
  .min(1)
  .refine((s) => !s.includes('\u0000'), 'a name has no NUL character');

const upstream = z
  .object({
    /** The targets; with `discovery`, those found are used instead (and these until the first answer). */
    targets: z.array(target).default([]),
    /** Targets found in a registry (etcd keys with leases, DNS records) and kept current (gateway/discovery.ts). */
    discovery: discoverySettings.optional(),
    balance: z
      .enum(['round_robin', 'weighted_round_robin', 'least_connections', 'consistent_hash'])
      .default('round_robin'),
    hashOn: z
      .union([
        z.object({ header: headerName }).strict(),
        z.object({ cookie: z.string().min(1) }).strict(),
        z.object({ clientIp: z.literal(true) }).strict(),
      ])
      .optional(),
    pool: z
      .object({
        maxConnections: z.number().int().min(1).default(POOL_DEFAULTS.maxConnections),
        maxIdle: z.number().int().min(0).default(POOL_DEFAULTS.maxIdle),
        idleTimeout: duration.default(POOL_DEFAULTS.idleTimeout),
        connectTimeout: duration.min(1).default(POOL_DEFAULTS.connectTimeout),
        queueTimeout: duration.min(1).default(POOL_DEFAULTS.queueTimeout),
        /** Requests that may wait for a connection at once; more are answered 503 at once. */
        maxQueue: z.number().int().min(0).default(POOL_DEFAULTS.maxQueue),
      })
      .strict()
      .default(POOL_DEFAULTS),
    timeouts: z
      .object({
        firstByte: duration.min(1).default(30_000),
        total: duration.min(1).default(60_000),
      })
      .strict()
      .default({ firstByte: 30_000, total: 60_000 }),
    retries: z.number().int().min(0).max(5).default(1),
    /**
     * Retries may add at most `percent` of the upstream's requests (plus `minPerSecond`) over `window`, so
     * they never multiply the load of an outage; `false` lifts the bound.
     */
    retryBudget: z
      .union([z.literal(false), retryBudgetSettings], {
        error: 'false, or { percent, minPerSecond, window }',
      })
      .default({ percent: 20, minPerSecond: 3, window: 10_000 }),
    /**
     * The protocol spoken to the targets: `http1` (keep-alive connections, one exchange each at a time), or
     * `http2`: streams multiplexed on pooled connections (`pool.maxConnections` of them), by prior
     * knowledge on plain targets and by ALPN `h2` over TLS; response trailers pass back (gRPC works end to
     * end). Default `http1`.
     */
    protocol: z.enum(['http1', 'http2']).default('http1'),
    /** TLS to every target (verified against `caFile` or Node's roots); `https://` targets use it too. */
    tls: upstreamTls.optional(),
    healthCheck: healthCheck.optional(),
    /**
     * Passive health: a target is ejected for `ejectTime` after `consecutiveFailures` failed exchanges in a
     * row. A failure is a connection refused, reset or timed out, or a response whose status is listed in
     * `statuses` (none by default: an upstream's 5xx answer to a client's request is the client's, and
     * counting it would let clients eject every target). At most `maxEjectionPercent` of the targets are
     * ejected at once (at least one).
     */
    passive: z
      .object({
        consecutiveFailures: z.number().int().min(1).default(PASSIVE_DEFAULTS.consecutiveFailures),
        ejectTime: duration.min(1).default(PASSIVE_DEFAULTS.ejectTime),
        statuses: z.array(z.number().int().min(500).max(599)).default([]),
        maxEjectionPercent: z.number().int().min(0).max(100).default(PASSIVE_DEFAULTS.maxEjectionPercent),
      })
      .strict()
      .default(PASSIVE_DEFAULTS),
    /**
     * When fewer than this share (percent) of the targets are usable, the balancer uses them all, healthy
     * or not (Envoy's panic threshold): a partial outage of the checks must not become a full one.
     */
    panicThreshold: z.number().int().min(0).max(100).default(50),
  })
  .strict()
  .superRefine((u, ctx) => {
    if (u.targets.length === 0 && u.discovery === undefined)
      ctx.addIssue({ code: 'custom', path: ['targets'], message: 'an upstream needs targets, or discovery' });
    if (u.balance === 'consistent_hash' && u.hashOn === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['hashOn'],
        message: 'consistent_hash needs hashOn (header, cookie or clientIp)',
      });
    }
  });

const pathPattern = z
  .string()
  .startsWith('/', 'a path starts with /')
  .refine((p) => !p.includes('?') && !p.includes('#'), 'a path has no query or fragment')
  .refine((p) => p.split('/').every((s) => !s.startsWith(':') || /^:[A-Za-z_][A-Za-z0-9_]*$/.test(s)), {
    message: 'a parameter segment is :name',
  });

const WEBSOCKET_DEFAULTS = {
  enabled: true,
  maxMessageSize: 0,
  idleTimeout: 600_000,
  maxLifetime: 0,
  closeTimeout: 5_000,
};

/**
 * WebSocket upgrades on a route (an HTTP/1.1 GET with `Upgrade: websocket`): the route's filters run on
 * the upgrade request, a target of its upstream answers it (HTTP/1.1 upstreams), then frames pass through
 * both ways unchanged (the client's masking and any extension they negotiated are kept), with backpressure
 * each way. The gateway reads every frame header to enforce these limits and the framing rules; a connection
 * the gateway ends gets a close frame (1001 going away, 1009 too big, 1002 protocol error, 1014 bad gateway
 * toward the client when the upstream broke the rules). Connections stay up across reloads that keep their
 * route and target, and take the new limits.
 */
const websocketSettings = z
  .object({
    /** Proxy upgrades (default). Off, `Upgrade` is dropped like any hop-by-hop field: a plain GET goes up. */
    enabled: z.boolean().default(WEBSOCKET_DEFAULTS.enabled),
    /** Largest message (its frames' payloads together, as sent: compressed if compressed); 0: no limit. */
    maxMessageSize: z.number().int().min(0).default(WEBSOCKET_DEFAULTS.maxMessageSize),
    /** Milliseconds without a frame either way (pings count) before both sides get 1001; 0: never. */
    idleTimeout: duration.default(WEBSOCKET_DEFAULTS.idleTimeout),
    /** Milliseconds a connection may last before both sides get 1001 (clients reconnect); 0: no limit. */
    maxLifetime: duration.default(WEBSOCKET_DEFAULTS.maxLifetime),
    /** Milliseconds the peers have to answer the gateway's close frame before their connections are cut. */
    closeTimeout: duration.min(1).default(WEBSOCKET_DEFAULTS.closeTimeout),
  })
  .strict()
  .default(WEBSOCKET_DEFAULTS);

const route = z
  .object({
    name: configName,
    domain: configName.default('default'),
    match: z
      .object({
        host: z
          .string()
          .regex(/^(\*\.)?[A-Za-z0-9.-]+(:\d+)?$|^\*$/, 'a host is name, *.suffix or *')
          .optional(),
        path: pathPattern,
        pathType: z.enum(['exact', 'prefix']).default('prefix'),
        /** Methods the route takes (CONNECT only when listed: it opens a tunnel to the upstream). */
        methods: z
          .array(z.string().regex(/^[A-Z]+$/, 'methods are upper-case tokens'))
          .min(1)
          .optional(),
        headers: headerRecord(z.string()).optional(),
      })
      .strict(),
    upstream: z.string().min(1),
    rewrite: z
      .union([
        z.object({ stripPrefix: rewritePath }).strict(),
        z.object({ replacePrefix: z.object({ from: rewritePath, to: rewritePath }).strict() }).strict(),
        z.object({ replace: rewritePath }).strict(),
      ])
      .optional(),
    requestHeaders: headerRules.optional(),
    responseHeaders: headerRules.optional(),
    preserveHost: z.boolean().default(true),
    /**
     * What the proxy adds to the requests it forwards on this route. Each is on by default; turned off, the
     * client's own fields of that kind pass through unchanged and none is generated.
     */
    proxyHeaders: z
      .object({
        /** `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded` (RFC 7239). */
        forwarded: z.boolean().default(true),
        /** `X-Request-Id`: generated when absent, passed on when present, echoed on the response. */
        requestId: z.boolean().default(true),
        /** W3C `traceparent`: a new span id per hop, a new trace when absent or invalid. */
        traceparent: z.boolean().default(true),
      })
      .strict()
      .default({ forwarded: true, requestId: true, traceparent: true }),
    /** The route's filters, in order: `{ name, ...settings }`, each checked against its filter's schema. */
    filters: z.array(z.object({ name: z.string().min(1) }).passthrough()).default([]),
    websocket: websocketSettings,
    /** Canary and A/B: rules and a weighted split choosing among upstreams per user (gateway/traffic.ts). */
    traffic: trafficSettings.optional(),
    /** A share of the route's requests copied to a shadow upstream, its answers discarded (gateway/mirror.ts). */
    mirror: mirrorSettings.optional(),
  })
  .strict();

const ADMIN_HOSTS = new Set(['127.0.0.1', '::1', 'localhost', '[::1]']);

/** The configuration schema (filter settings are checked separately, against the registry). */
export const configSchema = z
  .object({
    listeners: z
      .array(
        z
          .object({
            address,
            loops: z.union([z.number().int().min(1), z.literal('auto')]).default(1),
            /** HTTPS on this listener: certificates (watched for rotation), SNI, client certificates. */
            tls: listenerTls.optional(),
          })
          .strict(),
      )
      .min(1),
    /**
     * The admin endpoint. It listens on loopback unless `token` is set (then every request must carry
     * `Authorization: Bearer <token>`); it answers only requests whose Host names it (no DNS rebinding), and
     * refuses cross-site requests (an `Origin` or `Sec-Fetch-Site` from elsewhere).
     */
    admin: z
      .object({
        address,
        token: z
          .string()
          .min(16, 'an admin token has at least 16 characters')
          .regex(
            /^[A-Za-z0-9\-._~+/]+=*$/,
            'an admin token is a bearer token (letters, digits, -._~+/, no spaces)',
          )
          .optional(),
        /** More Host names the admin endpoint answers to (its own address and localhost always). */
        hosts: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .optional(),
    /** Modules defining filters (`defineFilter`), relative to the configuration file. */
    plugins: z.array(z.string().min(1)).default([]),
    http: z
      .object({
        /** Largest request body proxied (streamed, never buffered whole). Default 1 GiB. */
        maxBodySize: z
          .number()
          .int()
          .min(0)
          .default(1024 * 1024 * 1024),
        headersTimeout: duration.min(1).default(10_000),
        /** Milliseconds a client has to send its whole request body. Default 5 minutes. */
        requestTimeout: duration.min(1).default(300_000),
        keepAliveTimeout: duration.min(1).default(5_000),
        /**
         * A client's FIN while its request is proxied: `abort` (the default, as nginx and node:http do) ends
         * the call and frees the upstream connection; `serve` answers half-closed clients.
         */
        clientHalfClose: z.enum(['serve', 'abort']).default('abort'),
        /** Access records through each loop's logger (the log ring when one is configured). */
        accessLog: z.boolean().default(false),
        /**
         * Serve HTTP/2 as well as HTTP/1.1 on every listener: by prior knowledge (h2c) on cleartext ones, by
         * ALPN `h2` on TLS ones; upstreams stay HTTP/1.1. Default true.
         */
        http2: z.boolean().default(true),
        /** How request paths are normalised before routing (see gateway/paths.ts). */
        paths: z
          .object({
            mergeSlashes: z.boolean().default(true),
            encodedSlashes: z.enum(['refuse', 'keep']).default('refuse'),
          })
          .strict()
          .default({ mergeSlashes: true, encodedSlashes: 'refuse' }),
      })
      .strict()
      .default({
        maxBodySize: 1024 * 1024 * 1024,
        headersTimeout: 10_000,
        requestTimeout: 300_000,
        keepAliveTimeout: 5_000,
        clientHalfClose: 'abort',
        accessLog: false,
        http2: true,
        paths: { mergeSlashes: true, encodedSlashes: 'refuse' },
      }),
    /** Probes and traces (applied at start: a reload does not change them). */
    observability: z
      .object({
        /** Fire USDT probes through the optional `dtrace-provider` (a stub on Linux: see the README). */
        dtrace: z.boolean().default(false),
        /** OpenTelemetry spans of proxied requests, exported over OTLP/HTTP (gateway/tracing-export.ts). */
        tracing: tracingSettings.optional(),
      })
      .strict()
      .default({ dtrace: false }),
    upstreams: z.record(configName, upstream),
    routes: z.array(route),
  })
  .strict()
  .superRefine((c, ctx) => {
    c.routes.forEach((r, i) => {
      if (!(r.upstream in c.upstreams)) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'upstream'],
          message: `no upstream named "${r.upstream}"`,
        });
      }
      if (r.mirror !== undefined && !(r.mirror.upstream in c.upstreams))
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'mirror', 'upstream'],
          message: `no upstream named "${r.mirror.upstream}"`,
        });
      if (r.traffic === undefined) return;
      r.traffic.rules.forEach((rule, k) => {
        if (!(rule.upstream in c.upstreams))
          ctx.addIssue({
            code: 'custom',
            path: ['routes', i, 'traffic', 'rules', k, 'upstream'],
            message: `no upstream named "${rule.upstream}"`,
          });
      });
      r.traffic.split?.forEach((side, k) => {
        if (!(side.upstream in c.upstreams))
          ctx.addIssue({
            code: 'custom',
            path: ['routes', i, 'traffic', 'split', k, 'upstream'],
            message: `no upstream named "${side.upstream}"`,
          });
      });
    });
    for (const [i, r] of c.routes.entries()) checkAddedHeaders(r, i, ctx);
    const names = new Set<string>();
    c.routes.forEach((r, i) => {
      if (names.has(r.name))
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, 'name'],
          message: `duplicate route name "${r.name}"`,
        });
      names.add(r.name);
    });
    if (c.admin !== undefined && c.admin.token === undefined) {
      let a: ReturnType<typeof parseAddress>;
      try {
        a = parseAddress(c.admin.address);
      } catch {
        return; // the address itself is reported at its path
      }
      if (a.kind === 'tcp' && !ADMIN_HOSTS.has(a.host)) {
        ctx.addIssue({
          code: 'custom',
          path: ['admin', 'address'],
          message: 'an admin endpoint off loopback needs a token (admin.token)',
        });
      }
    }
  });

/**
 * A route may not add a field the proxy frames or writes itself: a second Content-Length or Host would reach
 * the upstream beside the proxy's own (a framing disagreement, or a Host the upstream may read either way).
 */
function checkAddedHeaders(r: z.infer<typeof route>, i: number, ctx: z.RefinementCtx): void {
  const owned = new Map<string, string>([
    ...HOP_BY_HOP.map((h): [string, string] => [h, 'a hop-by-hop or framing field the proxy writes itself']),
    ['host', 'the proxy writes Host (see preserveHost)'],
  ]);
  const flag = (on: boolean, names: readonly string[], which: string) => {
    if (!on) return;
    for (const h of names)
      owned.set(h, `added by the proxy (proxyHeaders.${which}); turn that off to set your own`);
  };
  flag(r.proxyHeaders.forwarded, [...FORWARDING], 'forwarded');
  flag(r.proxyHeaders.requestId, ['x-request-id'], 'requestId');
  flag(r.proxyHeaders.traceparent, ['traceparent'], 'traceparent');
  for (const key of Object.keys(r.requestHeaders?.add ?? {})) {
    const why = owned.get(key.toLowerCase());
    if (why !== undefined)
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'requestHeaders', 'add', key], message: why });
  }
  for (const key of Object.keys(r.responseHeaders?.add ?? {})) {
    const lower = key.toLowerCase();
    const why = HOP_BY_HOP.includes(lower)
      ? 'a hop-by-hop or framing field the proxy writes itself'
      : lower === 'x-request-id' && r.proxyHeaders.requestId
        ? 'echoed by the proxy (proxyHeaders.requestId); turn that off to set your own'
        : undefined;
    if (why !== undefined)
      ctx.addIssue({ code: 'custom', path: ['routes', i, 'responseHeaders', 'add', key], message: why });
  }
}

/** A validated configuration, defaults applied (filter settings parsed by their schemas). */
export type GatewayConfig = z.infer<typeof configSchema>;
export type UpstreamConfig = GatewayConfig['upstreams'][string];
export type RouteConfig = GatewayConfig['routes'][number];
export type TargetConfig = UpstreamConfig['targets'][number];

/** Thrown for an invalid configuration; `problems` name each bad field by its path. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(source: string, problems: string[]) {
    super(`invalid gateway configuration${source ? ` in ${source}` : ''}:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

function issuePath(path: readonly PropertyKey[]): string {
  return path.map(String).join('.') || '(root)';
}

/**
 * Validates a parsed configuration object; throws {@link ConfigError} listing every problem by path. Filter
 * entries are checked against `filters` (by default, the stock filters alone): an unknown name, or settings
 * their filter's schema refuses, are problems like any other.
 */
export function validateConfig(
  input: unknown,
  source = '',
  filters: FilterRegistry = stockFilters(),
): GatewayConfig {
  const result = configSchema.safeParse(input);
  if (!result.success) {
    // Filter entries are judged too, as far as the routes can be read: every problem is named at once.
    const routes = (input as { routes?: unknown } | null)?.routes;
    const readable = Array.isArray(routes)
      ? routes.map((r) => ({ filters: Array.isArray(r?.filters) ? (r.filters as unknown[]) : [] }))
      : [];
    const problems = result.error.issues.map((issue) => `${issuePath(issue.path)}: ${issue.message}`);
    const upstreams = (input as { upstreams?: unknown } | null)?.upstreams;
    checkFilters(
      readable,
      filters,
      problems,
      typeof upstreams === 'object' && upstreams !== null ? new Set(Object.keys(upstreams)) : null,
    );
    throw new ConfigError(source, problems);
  }
  const config = result.data;
  const problems: string[] = [];
  checkFilters(config.routes, filters, problems, new Set(Object.keys(config.upstreams)));
  if (problems.length > 0) throw new ConfigError(source, problems);
  return config;
}

/** Checks each route's filter entries against their filters' schemas; replaces them with the parsed ones. */
function checkFilters(
  routes: { filters: unknown[] }[],
  filters: FilterRegistry,
  problems: string[],
  upstreams: ReadonlySet<string> | null,
): void {
  routes.forEach((r, i) => {
    r.filters = r.filters.map((raw, k) => {
      if (typeof raw !== 'object' || raw === null || typeof (raw as { name?: unknown }).name !== 'string')
        return raw; // the schema reports it
      const entry = raw as { name: string };
      const { name, ...settings } = entry;
      const at = `routes.${i}.filters.${k}`;
      const definition = filters.get(name);
      if (definition === undefined) {
        const known = filters.names();
        problems.push(
          `${at}.name: no filter named "${name}" (known: ${known.length === 0 ? 'none' : known.join(', ')})`,
        );
        return entry;
      }
      const parsed = definition.settings.safeParse(settings);
      if (!parsed.success) {
        for (const issue of parsed.error.issues)
          problems.push(`${at}${issue.path.length > 0 ? `.${issuePath(issue.path)}` : ''}: ${issue.message}`);
        return entry;
      }
      if (upstreams !== null && definition.upstreamsOf !== undefined)
        for (const [path, upstream] of Object.entries(definition.upstreamsOf(parsed.data)))
          if (!upstreams.has(upstream)) problems.push(`${at}.${path}: no upstream named "${upstream}"`);
      return { name, ...(parsed.data as object) };
    });
  });
}

/** Parses JSON or YAML text (by file extension; `.json` is JSON, anything else YAML, a superset). */
export function parseConfigText(text: string, fileName: string): unknown {
  try {
    return extname(fileName) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(fileName, [`(syntax): ${(err as Error).message.split('\n')[0]}`]);
  }
}

/**
 * The module specifiers of a configuration's plugins: paths resolved against the directory of the file the
 * configuration came from (`base`, a directory), URLs and package names as they are.
 */
export function pluginSpecifiers(plugins: readonly string[], base: string): string[] {
  return plugins.map((p) => {
    if (/^[a-z][a-z0-9+.-]*:/i.test(p)) return p;
    if (p.startsWith('.') || isAbsolute(p)) return pathToFileURL(resolve(base, p)).href;
    return p;
  });
}

/**
 * Imports plugin modules and builds the registry of the filters they define, beside the stock ones. An
 * import that fails, a module that defines no filter, or a name defined twice is a {@link ConfigError}.
 */
export async function loadFilters(specifiers: readonly string[], source = ''): Promise<FilterRegistry> {
  const registry = stockFilters();
  const problems: string[] = [];
  // A module named twice (in the configuration and by the command line) is one module.
  for (const spec of new Set(specifiers)) {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(spec)) as Record<string, unknown>;
    } catch (err) {
      problems.push(`plugins: ${spec} could not be imported: ${(err as Error).message.split('\n')[0]}`);
      continue;
    }
    const defs = definitionsOf(mod);
    if (defs.length === 0) {
      problems.push(`plugins: ${spec} defines no filter (export what defineFilter returns)`);
      continue;
    }
    problems.push(...registry.add(defs, spec));
  }
  if (problems.length > 0) throw new ConfigError(source, problems);
  return registry;
}

/**
 * Reads, parses and validates a configuration file with the filters its plugins (and `extraPlugins`: module
 * specifiers, or paths relative to the working directory) define. Resolves with the configuration and the plugin specifiers in force.
 */
export async function loadConfig(
  path: string,
  extraPlugins: readonly string[] = [],
): Promise<{ config: GatewayConfig; plugins: string[]; filters: FilterRegistry }> {
  const text = await readFile(path, 'utf8');
  const input = parseConfigText(text, path);
  const listed = Array.isArray((input as { plugins?: unknown })?.plugins)
    ? ((input as { plugins: unknown[] }).plugins.filter((p) => typeof p === 'string') as string[])
    : [];
  // The file's plugins are relative to the file; extra ones (--plugins) to the working directory, as
  // startGateway reads them.
  const plugins = [
    ...pluginSpecifiers(listed, dirname(resolve(path))),
    ...pluginSpecifiers(extraPlugins, process.cwd()),
  ];
  const filters = await loadFilters(plugins, path);
  return { config: validateConfig(input, path, filters), plugins, filters };
}

/** Reads, parses and validates a configuration file (stock filters and the file's plugins). */
export async function loadConfigFile(path: string): Promise<GatewayConfig> {
  return (await loadConfig(path)).config;
}
