/**
 * The admin endpoint (its own listener, on the main thread): the configuration in force (redacted), routes,
 * each loop's view of its upstreams, engine counters, and a reload trigger.
 *
 * `GET /config`, `GET /routes`, `GET /upstreams`, `GET /stats`, `POST /reload`
 *
 * It is guarded three ways: a bearer token when `admin.token` is set (the configuration refuses an admin
 * address off loopback without one); a Host check, so a page on another site cannot reach it through DNS
 * rebinding; and a cross-site check (`Origin`, `Sec-Fetch-Site`), so a page in the operator's browser cannot
 * post a reload.
 */
import { timingSafeEqual } from 'node:crypto';
import { type EventHandler, EXPOSITION_CONTENT_TYPE, parseAddress } from '../core/index.ts';
import { type Request, type RequestHandler, type Response, server } from '../protocols/http1/index.ts';
import type { GatewayConfig } from './config.ts';
import type { Gateway } from './gateway.ts';

const ENDPOINTS = [
  'GET /config',
  'GET /routes',
  'GET /upstreams',
  'GET /stats',
  'POST /reload',
  'GET /faults',
  'POST /faults',
];
const REDACTED = '[redacted]';
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/** The host names the endpoint answers to: loopback, its own address's, and the configured ones. */
function allowedHosts(config: NonNullable<GatewayConfig['admin']>): Set<string> {
  const names = new Set(LOOPBACK_NAMES);
  const a = parseAddress(config.address);
  if (a.kind === 'tcp' && a.host !== '' && a.host !== '0.0.0.0' && a.host !== '::')
    names.add(a.host.includes(':') ? `[${a.host.toLowerCase()}]` : a.host.toLowerCase());
  for (const h of config.hosts) names.add(h.toLowerCase());
  return names;
}

/** Splits a Host value into its name (lower case) and port (-1 when absent). */
function splitHost(host: string): { name: string; port: number } {
  const colon = host.lastIndexOf(':');
  const bracketed = colon === -1 || host.endsWith(']');
  const name = (bracketed ? host : host.slice(0, colon)).toLowerCase();
  // A fully qualified `localhost.` is `localhost`.
  return {
    name: name.endsWith('.') ? name.slice(0, -1) : name,
    port: bracketed ? -1 : Number(host.slice(colon + 1)),
  };
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Why a request is refused (status and message), or null when it may go on. */
function refusal(
  req: Request,
  config: NonNullable<GatewayConfig['admin']>,
  names: Set<string>,
  port: number,
) {
  const host = req.header('host');
  const h = host === undefined ? null : splitHost(host);
  if (h === null || !names.has(h.name) || (h.port !== -1 && h.port !== port))
    return { status: 421, message: 'the admin endpoint does not answer to this Host' };
  const origin = req.header('origin');
  if (origin !== undefined) {
    let ok = false;
    try {
      const u = new URL(origin);
      const p = u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port);
      ok = u.protocol === 'http:' && names.has(u.hostname.toLowerCase()) && p === port;
    } catch {
      ok = false;
    }
    if (!ok) return { status: 403, message: 'cross-site requests are refused' };
  }
  const site = req.header('sec-fetch-site');
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    return { status: 403, message: 'cross-site requests are refused' };
  if (config.token !== undefined) {
    const auth = req.header('authorization') ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m === null || !sameSecret(m[1]!, config.token))
      return { status: 401, message: 'a bearer token is required' };
  }
  return null;
}

/** Names of an object's keys with every value replaced (settings may hold secrets). */
function redactValues(obj: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of Object.keys(obj)) out[key] = REDACTED;
  return out;
}

/**
 * The configuration as `GET /config` shows it: header values, filter settings and the admin token
 * replaced by `[redacted]` (they may be credentials), everything else as in force.
 */
export function redactConfig(config: GatewayConfig): unknown {
  const copy = structuredClone(config) as GatewayConfig & Record<string, unknown>;
  if (copy.admin?.token !== undefined) copy.admin.token = REDACTED;
  for (const r of copy.routes) {
    if (r.requestHeaders !== undefined) r.requestHeaders.add = redactValues(r.requestHeaders.add);
    if (r.responseHeaders !== undefined) r.responseHeaders.add = redactValues(r.responseHeaders.add);
    if (r.match.headers !== undefined) r.match.headers = redactValues(r.match.headers);
    r.filters = r.filters.map(({ name, ...settings }) => ({ name, ...redactValues(settings) }));
  }
  return copy;
}

function refuse(res: Response, status: number, message: string): void {
  if (status === 401) res.header('www-authenticate', 'Bearer realm="netloom-admin"');
  res.status(status).header('cache-control', 'no-store').json({ error: message, status });
}

/** The admin endpoint's handler for `gateway` (served on the main thread by `startGateway`). */
export function adminHandler(gateway: Gateway): EventHandler {
  const settings = gateway.config.admin;
  if (settings === undefined) throw new TypeError('the gateway has no admin endpoint configured');
  const names = allowedHosts(settings);
  const handle: RequestHandler = async (req, res) => {
    const denied = refusal(req, settings, names, gateway.admin?.port ?? -1);
    if (denied !== null) return refuse(res, denied.status, denied.message);
    res.header('cache-control', 'no-store');
    // Every answer says which configuration it speaks of: the version, and the source's revision (etcd's).
    res.header('x-netloom-config-version', String(gateway.version));
    const revision = gateway.revisionOf(gateway.version);
    if (revision !== undefined) res.header('x-netloom-config-revision', String(revision));
    const route = `${req.method} ${req.path}`;
    switch (route) {
      case 'GET /config':
        return res.json({
          version: gateway.version,
          source: gateway.source.description,
          ...(revision === undefined ? {} : { revision }),
          ...(gateway.source.status === undefined ? {} : { sourceStatus: gateway.source.status() }),
          loadedAt: new Date(gateway.loadedAt).toISOString(),
          config: redactConfig(gateway.config),
        });
      case 'GET /routes':
        return res.json(
          gateway.config.routes.map((r) => ({
            name: r.name,
            domain: r.domain,
            match: {
              ...r.match,
              headers: r.match.headers === undefined ? undefined : redactValues(r.match.headers),
            },
            upstream: r.upstream,
            filters: r.filters.map((f) => f.name),
          })),
        );
      case 'GET /upstreams':
        return res.json({
          version: gateway.version,
          ...(revision === undefined ? {} : { revision }),
          // Each loop's version, and the source revision it came from.
          loops: gateway.snapshots().map((s) => {
            const r = gateway.revisionOf(s.version);
            return r === undefined ? s : { ...s, revision: r };
          }),
        });
      case 'GET /stats':
        return res.json({
          listeners: gateway.listeners.map((e) => ({ address: e.address, ...e.stats() })),
          rateLimits: gateway.limitStats(),
          circuits: gateway.circuitStats(),
          mirrors: gateway.mirrorStats(),
        });
      case 'GET /metrics':
        return res.header('content-type', EXPOSITION_CONTENT_TYPE).end(gateway.metrics());
      case 'POST /reload':
        return res.json(await gateway.reload());
      case 'GET /faults':
        return res.json(gateway.faults());
      case 'POST /faults': {
        // POST /faults?route=NAME&switch=on|off|config
        const q = new URLSearchParams(req.query);
        const name = q.get('route') ?? '';
        const to = q.get('switch');
        if (to !== 'on' && to !== 'off' && to !== 'config')
          return refuse(res, 400, 'switch is on, off or config');
        if (!gateway.switchFaults(name, to))
          return refuse(res, 404, `no route "${name}" with a fault filter`);
        return res.json(gateway.faults());
      }
      default: {
        const known = ENDPOINTS.find((e) => e.endsWith(` ${req.path}`));
        if (known !== undefined) {
          res.header('allow', known.split(' ')[0]!);
          return refuse(res, 405, `use ${known}`);
        }
        res.status(404).json({ error: 'not found', endpoints: ENDPOINTS });
      }
    }
  };
  return server(handle);
}
