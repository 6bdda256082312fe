/**
 * USDT probes for `dtrace` and `bpftrace` users, through the optional `dtrace-provider` package: a bridge
 * subscribes to diagnostics channels and fires one probe per message. Where `dtrace-provider` is not
 * installed, or built its stub (on Linux it does: its native part builds on macOS, Solaris and FreeBSD
 * only, and npm may not run its install script at all), the bridge still subscribes but fires nothing:
 * `native` says which. Probes cost nothing until a bridge is made (the channels have no subscriber).
 */
import diagnostics from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import type { ConnCloseMessage, ConnOpenMessage } from './diagnostics.ts';

/** A USDT argument type, as dtrace-provider names them. */
export type UsdtType = 'int' | 'char *';

/** One probe fed by one channel: its name, argument types, and the arguments a message gives. */
export interface UsdtProbeSpec {
  readonly channel: string;
  readonly probe: string;
  readonly types: readonly UsdtType[];
  args(message: unknown): (number | string)[];
}

/** A live bridge from channels to probes. */
export interface UsdtBridge {
  /** The probes are real USDT probes (false: dtrace-provider's stub, or no dtrace-provider). */
  readonly native: boolean;
  /** Unsubscribes and disables the provider. */
  disable(): void;
}

interface DtraceProbe {
  fire(args: () => (number | string)[]): void;
}
interface DtraceProvider {
  addProbe(name: string, ...types: string[]): DtraceProbe;
  enable(): void;
  disable(): void;
}
interface DtraceModule {
  DTraceProvider: { name: string };
  createDTraceProvider(name: string): DtraceProvider;
}

function loadDtrace(): DtraceModule | null {
  try {
    return createRequire(import.meta.url)('dtrace-provider') as DtraceModule;
  } catch {
    return null; // an optional dependency: not installed, or not loadable here
  }
}

/**
 * Fires the probes of provider `provider` (`netloom` for the stock ones) from `specs`' channels, on this
 * thread (channels are per thread: make a bridge on each loop's thread). Never throws for a missing or
 * stubbed `dtrace-provider`.
 */
export function bridgeToUsdt(provider: string, specs: readonly UsdtProbeSpec[]): UsdtBridge {
  const dtrace = loadDtrace();
  const native = dtrace !== null && dtrace.DTraceProvider.name !== 'DTraceProviderStub';
  const p = dtrace?.createDTraceProvider(provider) ?? null;
  const subscriptions: [string, (message: unknown) => void][] = [];
  for (const spec of specs) {
    const probe = p?.addProbe(spec.probe, ...spec.types) ?? null;
    const listener = (message: unknown) => probe?.fire(() => spec.args(message));
    diagnostics.subscribe(spec.channel, listener);
    subscriptions.push([spec.channel, listener]);
  }
  p?.enable();
  return {
    native,
    disable() {
      for (const [channel, listener] of subscriptions.splice(0)) diagnostics.unsubscribe(channel, listener);
      p?.disable();
    },
  };
}

/** The engine's probes: `conn-open(id)` and `conn-close(id, error message or "")`. */
export const engineUsdtProbes: readonly UsdtProbeSpec[] = [
  {
    channel: 'netloom:conn:open',
    probe: 'conn-open',
    types: ['int'],
    args: (m) => [(m as ConnOpenMessage).conn.id],
  },
  {
    channel: 'netloom:conn:close',
    probe: 'conn-close',
    types: ['int', 'char *'],
    args: (m) => [(m as ConnCloseMessage).conn.id, (m as ConnCloseMessage).error?.message ?? ''],
  },
];
