/**
 * `node:diagnostics_channel` probes of the gateway: free while nobody subscribes (`hasSubscribers`).
 * Channels are per thread: the proxy's publish on each loop's thread (subscribe from a plugin module, which
 * every loop imports), the reload's on the main thread.
 */
import diagnostics from 'node:diagnostics_channel';
import type { UsdtProbeSpec } from '../core/index.ts';
import type { CompletionRecord } from './completion.ts';
import type { RequestContext } from './filter.ts';
import type { ReloadResult } from './gateway.ts';

/** `netloom:gateway:proxy:start`: a request entered its route's pipeline (before the `onRequest` filters). */
export interface ProxyStartMessage {
  readonly ctx: RequestContext;
  readonly route: string;
}

/** `netloom:gateway:proxy:attempt`: a target was picked for an attempt (`attempt` 1 is the first try). */
export interface ProxyAttemptMessage {
  readonly ctx: RequestContext;
  readonly upstream: string;
  readonly target: string;
  readonly attempt: number;
}

/** `netloom:gateway:proxy:complete`: the request's completion record is final. */
export interface ProxyCompleteMessage {
  readonly ctx: RequestContext;
  readonly record: CompletionRecord;
}

/** `netloom:gateway:reload`: a reload finished (applied, unchanged or refused). */
export interface ReloadMessage {
  readonly result: ReloadResult;
}

/** The gateway's channels, by name. */
export const gatewayChannels = {
  proxyStart: diagnostics.channel('netloom:gateway:proxy:start'),
  proxyAttempt: diagnostics.channel('netloom:gateway:proxy:attempt'),
  proxyComplete: diagnostics.channel('netloom:gateway:proxy:complete'),
  reload: diagnostics.channel('netloom:gateway:reload'),
} as const;

/**
 * The gateway's USDT probes (for `bridgeToUsdt`): `proxy-start(route)`, `proxy-attempt(upstream, target,
 * attempt)`, `proxy-complete(route, status, milliseconds)`, `reload(ok)`.
 */
export const gatewayUsdtProbes: readonly UsdtProbeSpec[] = [
  {
    channel: 'netloom:gateway:proxy:start',
    probe: 'proxy-start',
    types: ['char *'],
    args: (m) => [(m as ProxyStartMessage).route],
  },
  {
    channel: 'netloom:gateway:proxy:attempt',
    probe: 'proxy-attempt',
    types: ['char *', 'char *', 'int'],
    args: (m) => {
      const a = m as ProxyAttemptMessage;
      return [a.upstream, a.target, a.attempt];
    },
  },
  {
    channel: 'netloom:gateway:proxy:complete',
    probe: 'proxy-complete',
    types: ['char *', 'int', 'int'],
    args: (m) => {
      const r = (m as ProxyCompleteMessage).record;
      return [r.route, r.status, Math.round(r.totalMs)];
    },
  },
  {
    channel: 'netloom:gateway:reload',
    probe: 'reload',
    types: ['int'],
    args: (m) => [(m as ReloadMessage).result.ok ? 1 : 0],
  },
];
