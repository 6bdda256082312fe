/**
 * The engine handler module of the gateway: every loop imports it and gets its configuration in
 * `loop.data` (see `startGateway`). A custom handler module registers its filters and re-exports this.
 */
import type { EventHandler, EventLoop } from '../core/index.ts';
import { type Exchange, server } from '../protocols/http1/index.ts';
import { GatewayLoop, type GatewayLoopData } from './dispatcher.ts';

export default function createGatewayHandler(loop: EventLoop): EventHandler<Exchange> {
  const data = loop.data as GatewayLoopData;
  const gateway = new GatewayLoop(loop, data);
  const settings = data.config.http;
  const http = server((req, res) => gateway.handle(req, res), {
    maxBodySize: Math.max(settings.maxBodySize, 1),
    headersTimeout: settings.headersTimeout,
    requestTimeout: settings.requestTimeout,
    keepAliveTimeout: settings.keepAliveTimeout,
    accessLog: settings.accessLog,
  });
  return {
    ...http,
    onShutdown(l) {
      http.onShutdown?.(l);
      gateway.close();
    },
  };
}
