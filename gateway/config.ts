import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { FORWARDING, HOP_BY_HOP } from './hop-by-hop.ts';

/**
 * The gateway's declarative configuration: listeners, an admin endpoint, upstreams and routes. Validated with
 * a schema; every problem is reported with the path of the bad field (`routes.2.match.path: ...`).
 */

const duration = z.number().int().nonnegative();
const headerName = z.string().regex(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/, 'not a valid header name');
const headerValue = z.string().regex(/^[\t\x20-\x7e\x80-\xff]*$/, 'invalid character in a header value');
const address = z
  .string()
  .regex(
    /^((tcp[46]?):\/\/)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$|^unix:\/\/.+$/,
    'not an address (host:port)',
  );

/** A record keyed by header names, each key checked with the same message as elsewhere. */
function headerRecord<V extends z.ZodType>(value: V) {
  return z.record(z.string(), value).superRefine((obj, ctx) => {
    for (const key of Object.keys(obj)) {
      if (!headerName.safeParse(key).success)
        ctx.addIssue({ code: 'custom', path: [key], message: 'not a valid header name' });
    }
  });
}

const headerRules = z
  .object({
    add: headerRecord(headerValue).default({}),
    remove: z.array(headerName).default([]),
  })
  .strict();

const target = z
  .object({
    address: address.describe('host:port of the target'),
    weight: z.number().int().min(1).max(1000).default(1),
  })
  .strict();

const healthCheck = z
  .object({
    path: z.string().startsWith('/').default('/health'),
    interval: duration.min(10).default(5000),
    timeout: duration.min(1).default(2000),
    healthyThreshold: z.number().int().min(1).default(2),
    unhealthyThreshold: z.number().int().min(1).default(3),
  })
  .strict();

const upstream = z
  .object({
    targets: z.array(target).min(1),
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
        maxConnections: z.number().int().min(1).default(256),
        maxIdle: z.number().int().min(0).default(256),
        idleTimeout: duration.default(30_000),
        connectTimeout: duration.min(1).default(2_000),
        queueTimeout: duration.min(1).default(5_000),
      })
      .strict()
      .default({
        maxConnections: 256,
        maxIdle: 256,
        idleTimeout: 30_000,
        connectTimeout: 2_000,
        queueTimeout: 5_000,
      }),
    timeouts: z
      .object({
        firstByte: duration.min(1).default(30_000),
        total: duration.min(1).default(60_000),
      })
      .strict()
      .default({ firstByte: 30_000, total: 60_000 }),
    retries: z.number().int().min(0).max(5).default(1),
    healthCheck: healthCheck.optional(),
    passive: z
      .object({
        consecutiveFailures: z.number().int().min(1).default(5),
        ejectTime: duration.min(1).default(10_000),
      })
      .strict()
      .default({ consecutiveFailures: 5, ejectTime: 10_000 }),
  })
  .strict()
  .superRefine((u, ctx) => {
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

const route = z
  .object({
    name: z.string().min(1),
    domain: z.string().min(1).default('default'),
    match: z
      .object({
        host: z
          .string()
          .regex(/^(\*\.)?[A-Za-z0-9.-]+(:\d+)?$|^\*$/, 'a host is name, *.suffix or *')
          .optional(),
        path: pathPattern,
        pathType: z.enum(['exact', 'prefix']).default('prefix'),
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
        z.object({ stripPrefix: z.string().startsWith('/') }).strict(),
        z
          .object({
            replacePrefix: z
              .object({ from: z.string().startsWith('/'), to: z.string().startsWith('/') })
              .strict(),
          })
          .strict(),
        z.object({ replace: z.string().startsWith('/') }).strict(),
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
    filters: z.array(z.object({ name: z.string().min(1) }).passthrough()).default([]),
  })
  .strict();

/** The configuration schema. */
export const configSchema = z
  .object({
    listeners: z
      .array(
        z
          .object({ address, loops: z.union([z.number().int().min(1), z.literal('auto')]).default(1) })
          .strict(),
      )
      .min(1),
    admin: z.object({ address }).strict().optional(),
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
        /** Access records through each loop's logger (the log ring when one is configured). */
        accessLog: z.boolean().default(false),
      })
      .strict()
      .default({
        maxBodySize: 1024 * 1024 * 1024,
        headersTimeout: 10_000,
        requestTimeout: 300_000,
        keepAliveTimeout: 5_000,
        accessLog: false,
      }),
    upstreams: z.record(z.string().min(1), upstream),
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

/** A validated configuration, defaults applied. */
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

/** Validates a parsed configuration object; throws {@link ConfigError} listing every problem by path. */
export function validateConfig(input: unknown, source = ''): GatewayConfig {
  const result = configSchema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map(
    (issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`,
  );
  throw new ConfigError(source, problems);
}

/** Parses JSON or YAML text (by file extension; `.json` is JSON, anything else YAML, a superset). */
export function parseConfigText(text: string, fileName: string): unknown {
  try {
    return extname(fileName) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(fileName, [`(syntax): ${(err as Error).message.split('\n')[0]}`]);
  }
}

/** Reads, parses and validates a configuration file. */
export async function loadConfigFile(path: string): Promise<GatewayConfig> {
  const text = await readFile(path, 'utf8');
  return validateConfig(parseConfigText(text, path), path);
}
