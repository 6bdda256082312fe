import type { EventHandler } from '../core/index.ts';
import { type RequestHandler, server } from '../protocols/http1/index.ts';
import type { Gateway } from './gateway.ts';

/**
 * The admin endpoint (its own listener, on the main thread): configuration version, routes, upstream target
 * health and pool counters per loop, engine counters, and a reload trigger.
 *
 * GET /config, GET /routes, GET /upstreams, GET /stats, POST /reload
 */
export function adminHandler(gateway: Gateway): EventHandler {
  const handle: RequestHandler = async (req, res) => {
    const route = `${req.method} ${req.path}`;
    switch (route) {
      case 'GET /config':
        return res.json({
          version: gateway.version,
          source: gateway.source.description,
          loadedAt: new Date(gateway.loadedAt).toISOString(),
          config: gateway.config,
        });
      case 'GET /routes':
        return res.json(
          gateway.config.routes.map((r) => ({
            name: r.name,
            domain: r.domain,
            match: r.match,
            upstream: r.upstream,
            filters: r.filters.map((f) => f.name),
          })),
        );
      case 'GET /upstreams':
        return res.json({ version: gateway.version, loops: gateway.snapshots() });
      case 'GET /stats':
        return res.json({ listeners: gateway.listeners.map((e) => ({ address: e.address, ...e.stats() })) });
      case 'POST /reload':
        return res.json(await gateway.reload());
      default:
        res.status(404).json({
          error: 'not found',
          endpoints: ['GET /config', 'GET /routes', 'GET /upstreams', 'GET /stats', 'POST /reload'],
        });
    }
  };
  return server(handle);
}
