/**
 * netloom's engine: event loops over worker threads with SO_REUSEPORT, the `Conn` API, timers, dialing,
 * graceful shutdown and shared-memory stats. Protocols and the gateway build on this entry point.
 *
 * @packageDocumentation
 */
export { type Address, formatAddress, parseAddress } from './address.ts';
export { COPY_LIMIT, Conn, type TlsInfo } from './conn.ts';
export { type ConnCloseMessage, type ConnOpenMessage, engineChannels } from './diagnostics.ts';
export {
  bridgeToUsdt,
  engineUsdtProbes,
  type UsdtBridge,
  type UsdtProbeSpec,
  type UsdtType,
} from './dtrace.ts';
export { Engine, type EngineEvents, type StopOptions, serve } from './engine.ts';
export { NetloomError, type NetloomErrorCode, netloomError } from './errors.ts';
export { Action, type EventHandler, type HandlerExport } from './handler.ts';
export { hash32 } from './hash.ts';
export * from './log/index.ts';
export { type AccessRecord, type LogFields, type Logger, type LogLevel, stderrLogger } from './logger.ts';
export { type DialOptions, EventLoop, type EventLoop as Loop, type LoopTimer } from './loop.ts';
export { MemoryPipe } from './memory-pipe.ts';
export * from './metrics/index.ts';
export { type IoPath, latin1, writeLatin1, writeUtf8 } from './node-internals.ts';
export { DEFAULT_OPTIONS, definedOptions, type EngineOptions, type ResolvedOptions } from './options.ts';
export type { EngineStats, LoopStats } from './stats.ts';
export type {
  CertificatePair,
  CertificateSource,
  DialTlsOptions,
  LoadedCertificate,
  Pem,
  ResolvedTls,
  TlsOptions,
} from './tls/options.ts';
