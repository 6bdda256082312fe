/**
 * `node:diagnostics_channel` probes of the engine. Publishing costs one property check while nobody
 * subscribes (`hasSubscribers`, as undici does). Channels are per thread: subscribe on the loop's thread
 * (in `onBoot`, or a module every loop imports), one subscription a loop.
 */
import diagnostics from 'node:diagnostics_channel';
import type { Conn } from './conn.ts';

/** `netloom:conn:open`: a connection opened (accepted, or a dial completed), before the handler's `onOpen`. */
export interface ConnOpenMessage {
  readonly conn: Conn;
}

/** `netloom:conn:close`: a connection closed; `error` says why when it was not a clean close. */
export interface ConnCloseMessage {
  readonly conn: Conn;
  readonly error: Error | undefined;
}

/** The engine's channels, by name. */
export const engineChannels = {
  connOpen: diagnostics.channel('netloom:conn:open'),
  connClose: diagnostics.channel('netloom:conn:close'),
} as const;
