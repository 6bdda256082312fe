/**
 * `netloom/gateway`: an API gateway on netloom's engine and HTTP/1.1 codec, to run as it is
 * (`netloom-gateway --config gateway.yaml`) or to build on: declarative configuration with two-phase hot
 * reload, a compiled router, balancers, pools and health checks, a request pipeline of named stages that
 * filters extend ({@link defineFilter}), memory shared by every loop, one completion record per request,
 * and a guarded admin endpoint.
 *
 * @packageDocumentation
 */
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
export type { CircuitStats } from './circuit-breaker.ts';
export { type AnsweredBy, CompletionRecord, type FailureKind } from './completion.ts';
export {
  ConfigError,
  configSchema,
  type GatewayConfig,
  loadConfig,
  loadConfigFile,
  loadFilters,
  parseConfigText,
  type RouteConfig,
  type TargetConfig,
  type UpstreamConfig,
  validateConfig,
} from './config.ts';
export { EtcdConfigSource, type EtcdSourceOptions, type EtcdSourceStatus } from './config-etcd.ts';
export { type PushOptions, pushConfig } from './config-push.ts';
export { type ConfigSource, FileConfigSource, StaticConfigSource } from './config-source.ts';
export {
  gatewayChannels,
  gatewayUsdtProbes,
  type ProxyAttemptMessage,
  type ProxyCompleteMessage,
  type ProxyStartMessage,
  type ReloadMessage,
} from './diagnostics.ts';
export type { LoopSnapshot } from './dispatcher.ts';
export { GatewayError, type GatewayErrorCode } from './errors.ts';
export {
  EtcdClient,
  type EtcdClientOptions,
  type EtcdEvent,
  type EtcdKeyValue,
  type EtcdOperation,
  type EtcdWatch,
  type WatchEnd,
} from './etcd-client.ts';
export {
  defineFilter,
  type FilterDefinition,
  type FilterInstance,
  FilterRegistry,
  type FilterSetup,
  type GatewayFailure,
  isFilterDefinition,
  type RequestContext,
  type ResponseHead,
  type UpstreamRequestHead,
} from './filter.ts';
export { Gateway, type GatewayOptions, type LimitStats, type ReloadResult, startGateway } from './gateway.ts';
export { createGatewayHandler } from './handler.ts';
export type { MirrorSettings, MirrorStats } from './mirror.ts';
export { normalizePath, PathError, type PathOptions } from './paths.ts';
export type { RetryBudgetSettings } from './retry-budget.ts';
export { type HeaderSource, type RouteMatch, Router, type RouteSpec } from './router.ts';
export {
  createKeyTable,
  hashKey,
  KEY_SEED,
  KEY_SLOTS,
  type KeyHash,
  type LimitOutcome,
  SharedKeyTable,
} from './shared-keys.ts';
export { type SharedCounter, SharedState, type SharedTokenBucket } from './shared-state.ts';
export { respond, stockFilters } from './stock-filters.ts';
export { newRequestId, nextTraceparent } from './tracing.ts';
