/**
 * API-gateway building blocks on netloom's engine and HTTP/1.1 codec: declarative configuration with hot
 * reload, a compiled router, upstream pools and balancers, health checks, the proxy, filters and the admin
 * endpoint.
 *
 * @packageDocumentation
 */
export { adminHandler } from './admin.ts';
export {
  type BalancedTarget,
  type Balancer,
  ConsistentHash,
  createBalancer,
  hash32,
  LeastConnections,
  RoundRobin,
  SmoothWeighted,
} from './balancer.ts';
export {
  ConfigError,
  configSchema,
  type GatewayConfig,
  loadConfigFile,
  parseConfigText,
  type RouteConfig,
  type UpstreamConfig,
  validateConfig,
} from './config.ts';
export { type ConfigSource, FileConfigSource, StaticConfigSource } from './config-source.ts';
export { GatewayLoop, type GatewayLoopData, type LoopSnapshot } from './dispatcher.ts';
export {
  type Filter,
  type FilterContext,
  type FilterFactory,
  type ResponseHeaders,
  registerFilter,
} from './filter.ts';
export { Gateway, type GatewayOptions, type ReloadResult, startGateway } from './gateway.ts';
export { type PoolOptions, type PoolStats, TargetPool } from './pool.ts';
export { ProxyCall, sendGatewayError } from './proxy.ts';
export { type HeaderSource, type RouteMatch, Router, type RouteSpec } from './router.ts';
export type { RouteRuntime } from './runtime.ts';
export { newRequestId, nextTraceparent } from './tracing.ts';
export { cookieValue, TargetRegistry, Upstream, UpstreamTarget } from './upstream.ts';
