/**
 * permessage-deflate (RFC 7692), without context takeover either way: each message is compressed and
 * inflated on its own, so a connection keeps no zlib state between messages (an idle connection costs
 * nothing for it) and no zlib job outlives its call. Inflating is bounded while it runs: past `maxPayload`
 * output it stops (close 1009), so a small message that inflates to gigabytes never allocates them.
 */
import zlib from 'node:zlib';
import { wsError } from './errors.ts';

/** What the server agreed to: the response's extension header and how it compresses. */
export interface DeflateAgreement {
  /** The `Sec-WebSocket-Extensions` value of the response. */
  readonly header: string;
  /** The window the server's deflate uses (the client's `server_max_window_bits`, else 15). */
  readonly serverWindowBits: number;
}

/** Options of permessage-deflate (the behaviour's `compression`). */
export interface CompressionOptions {
  /** Messages shorter than this go uncompressed (small ones gain nothing). Default 1024 octets. */
  threshold?: number;
  /** The `client_max_window_bits` asked of clients that offer it (8-15). Default 15. */
  clientMaxWindowBits?: number;
}

const SYNC_TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

/** Splits an extension header into offers: name and parameters (`true` for a parameter without value). */
function offers(header: string): { name: string; params: Map<string, string | true> }[] {
  const out: { name: string; params: Map<string, string | true> }[] = [];
  for (const ext of header.split(',')) {
    const parts = ext.split(';').map((p) => p.trim());
    const name = parts.shift()?.toLowerCase() ?? '';
    if (name === '') continue;
    const params = new Map<string, string | true>();
    let bad = false;
    for (const p of parts) {
      const eq = p.indexOf('=');
      const key = (eq === -1 ? p : p.slice(0, eq)).trim().toLowerCase();
      let value: string | true = eq === -1 ? true : p.slice(eq + 1).trim();
      if (typeof value === 'string' && value.startsWith('"') && value.endsWith('"'))
        value = value.slice(1, -1);
      if (params.has(key)) bad = true; // a parameter twice makes the offer invalid (§7)
      params.set(key, value);
    }
    if (!bad) out.push({ name, params });
  }
  return out;
}

function windowBits(value: string | true | undefined): number | null {
  if (value === undefined) return 15;
  if (value === true || !/^(8|9|1[0-5])$/.test(value)) return null;
  return Number(value);
}

/**
 * The first permessage-deflate offer in `header` we can accept, answered with no context takeover both
 * ways, or null (then the connection goes uncompressed).
 */
export function negotiateDeflate(
  header: string | undefined,
  options: CompressionOptions,
): DeflateAgreement | null {
  if (header === undefined) return null;
  for (const { name, params } of offers(header)) {
    if (name !== 'permessage-deflate') continue;
    let ok = true;
    for (const key of params.keys()) {
      if (
        key !== 'server_no_context_takeover' &&
        key !== 'client_no_context_takeover' &&
        key !== 'server_max_window_bits' &&
        key !== 'client_max_window_bits'
      )
        ok = false;
    }
    if (!ok) continue;
    if (
      params.get('server_no_context_takeover') !== undefined &&
      params.get('server_no_context_takeover') !== true
    )
      continue;
    if (
      params.get('client_no_context_takeover') !== undefined &&
      params.get('client_no_context_takeover') !== true
    )
      continue;
    const serverBits = windowBits(params.get('server_max_window_bits'));
    // zlib's raw deflate has no 8-bit window: an offer that insists on it is declined.
    if (serverBits === null || serverBits < 9) continue;
    const clientParam = params.get('client_max_window_bits');
    if (clientParam !== undefined && clientParam !== true && windowBits(clientParam) === null) continue;
    let response = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
    if (params.has('server_max_window_bits')) response += `; server_max_window_bits=${serverBits}`;
    if (clientParam !== undefined) {
      const asked = clientParam === true ? 15 : Number(clientParam);
      response += `; client_max_window_bits=${Math.min(asked, options.clientMaxWindowBits ?? 15)}`;
    }
    return { header: response, serverWindowBits: serverBits };
  }
  return null;
}

/** A message compressed on its own (§7.2.1: the sync flush's empty block tail removed). */
export function deflateMessage(data: Uint8Array, windowBits: number): Buffer {
  const out = zlib.deflateRawSync(data, { windowBits, finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
}

/** A compressed message inflated, at most `maxOutput` octets of it; past that, close 1009. */
export function inflateMessage(data: Buffer, maxOutput: number): Buffer {
  try {
    return zlib.inflateRawSync(Buffer.concat([data, SYNC_TAIL]), {
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
      maxOutputLength: maxOutput,
    });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE')
      throw wsError('tooBig', `a compressed message inflating past ${maxOutput} octets`);
    throw wsError('inflate', `a compressed message that does not inflate: ${(err as Error).message}`);
  }
}
