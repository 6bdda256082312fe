/**
 * The engine handler module of the gateway: every loop imports it and finds its configuration in
 * `loop.data` (see `startGateway`). The loop imports the plugin modules the main thread validated, builds
 * its routes, asks the main thread for the version in force (a loop restarted after a crash boots with the
 * data it was first given), and serves HTTP/1.1 and HTTP/2 with the configuration's `http` settings.
 */
import type { EventHandler, EventLoop } from '../core/index.ts';
import { server } from '../protocols/http2/index.ts';
import { loadFilters } from './config.ts';
import { GatewayLoop, type GatewayLoopData } from './dispatcher.ts';

/**
 * Makes the gateway's handler for `loop` (loop thread). A custom handler module may wrap what it returns
 * (extra hooks) and export that as its default; `startGateway({ handlerModule })` names such a module.
 */
export async function createGatewayHandler(loop: EventLoop): Promise<EventHandler<unknown>> {
  const data = loop.data as GatewayLoopData;
  const filters = await loadFilters(data.plugins);
  const gateway = new GatewayLoop(loop, data, filters);
  await gateway.synced();
  const settings = data.config.http;
  const http = server((req, res) => gateway.handle(req, res), {
    maxBodySize: Math.max(settings.maxBodySize, 1),
    headersTimeout: settings.headersTimeout,
    requestTimeout: settings.requestTimeout,
    keepAliveTimeout: settings.keepAliveTimeout,
    clientHalfClose: settings.clientHalfClose,
    accessLog: settings.accessLog,
    // The body limit and timeouts above apply to HTTP/2 streams as well.
    http2: settings.http2 ? {} : false,
  });
  return {
    ...http,
    onShutdown(l) {
      http.onShutdown?.(l);
      gateway.close();
    },
  };
}

export default createGatewayHandler;
