/**
 * Reads what the loop needs from a TLS ClientHello before OpenSSL sees it (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2):
 * whether the bytes are TLS at all, the server name (RFC 6066 §3) and the name of the key that sealed a session
 * ticket the client offers (RFC 5077's `SessionTicket`, or TLS 1.3's `pre_shared_key` identity). OpenSSL puts
 * its 16-byte key name first in every ticket it seals, so the loop can hand the handshake to the context that
 * holds that key. Only the first record is read; a ClientHello continued in a second record yields what the
 * first one holds, and OpenSSL still judges the whole.
 */

/** The first byte of a TLS handshake record. */
const HANDSHAKE_RECORD = 0x16;
const CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const EXT_SESSION_TICKET = 35;
const EXT_PRE_SHARED_KEY = 41;
/** TLSPlaintext records carry at most 2^14 bytes (RFC 8446 §5.1). */
export const MAX_RECORD = 5 + (1 << 14);
/** OpenSSL's ticket key name length. */
export const KEY_NAME_LENGTH = 16;

/** What the first record says. */
export interface ClientHelloInfo {
  /** `more`: wait for more bytes; `tls`: a handshake record; `not-tls`: anything else (plaintext, garbage). */
  kind: 'more' | 'tls' | 'not-tls';
  /** The host name the client asked for, lowercased, or '' when it sent none. */
  servername: string;
  /** The first 16 bytes of the first ticket offered (OpenSSL's key name), or null. */
  ticketKeyName: Uint8Array | null;
  /** Whether the whole ClientHello was in the first record (else what it says may be missing). */
  complete: boolean;
}

const MORE: ClientHelloInfo = Object.freeze({
  kind: 'more',
  servername: '',
  ticketKeyName: null,
  complete: false,
});
const NOT_TLS: ClientHelloInfo = Object.freeze({
  kind: 'not-tls',
  servername: '',
  ticketKeyName: null,
  complete: false,
});

/** Judges `buf` (the bytes read so far); it never throws on malformed input. */
export function readClientHello(buf: Uint8Array): ClientHelloInfo {
  if (buf.length === 0) return MORE;
  if (buf[0] !== HANDSHAKE_RECORD) return NOT_TLS;
  if (buf.length < 5) return MORE;
  // Record versions are 3.x; SSLv2-style hellos and other bytes are not TLS this server speaks.
  if (buf[1] !== 3) return NOT_TLS;
  const recordLength = (buf[3]! << 8) | buf[4]!;
  if (recordLength === 0 || recordLength > 1 << 14) return NOT_TLS;
  if (buf.length < 5 + recordLength) return MORE;
  const info: ClientHelloInfo = { kind: 'tls', servername: '', ticketKeyName: null, complete: false };
  parseHello(buf.subarray(5, 5 + recordLength), info);
  return info;
}

/** Fills `info` from a handshake fragment; stops quietly at the first thing that does not fit. */
function parseHello(b: Uint8Array, info: ClientHelloInfo): void {
  if (b.length < 4 || b[0] !== CLIENT_HELLO) return;
  info.complete = 4 + ((b[1]! << 16) | (b[2]! << 8) | b[3]!) <= b.length;
  let p = 4; // msg_type(1) length(3)
  p += 2 + 32; // legacy_version, random
  if (p + 1 > b.length) return;
  p += 1 + b[p]!; // legacy_session_id
  if (p + 2 > b.length) return;
  p += 2 + ((b[p]! << 8) | b[p + 1]!); // cipher_suites
  if (p + 1 > b.length) return;
  p += 1 + b[p]!; // legacy_compression_methods
  if (p + 2 > b.length) return;
  const extEnd = Math.min(b.length, p + 2 + ((b[p]! << 8) | b[p + 1]!));
  p += 2;
  while (p + 4 <= extEnd) {
    const type = (b[p]! << 8) | b[p + 1]!;
    const len = (b[p + 2]! << 8) | b[p + 3]!;
    p += 4;
    if (p + len > extEnd) return;
    if (type === EXT_SERVER_NAME) info.servername = serverName(b, p, p + len);
    else if (type === EXT_SESSION_TICKET && len >= KEY_NAME_LENGTH) {
      info.ticketKeyName ??= b.slice(p, p + KEY_NAME_LENGTH);
    } else if (type === EXT_PRE_SHARED_KEY && len >= 2 + 2 + KEY_NAME_LENGTH) {
      // identities<7..2^16-1>: the first identity's opaque<1..2^16-1> ticket.
      const idLen = (b[p + 2]! << 8) | b[p + 3]!;
      if (idLen >= KEY_NAME_LENGTH && p + 4 + KEY_NAME_LENGTH <= p + len) {
        info.ticketKeyName = b.slice(p + 4, p + 4 + KEY_NAME_LENGTH);
      }
    }
    p += len;
  }
}

/** The host_name entry of a server_name extension, lowercased; '' when absent or not a plausible name. */
function serverName(b: Uint8Array, start: number, end: number): string {
  let p = start + 2; // server_name_list length
  while (p + 3 <= end) {
    const nameType = b[p]!;
    const len = (b[p + 1]! << 8) | b[p + 2]!;
    p += 3;
    if (p + len > end) return '';
    if (nameType === 0) {
      let name = '';
      for (let i = p; i < p + len; i++) {
        let c = b[i]!;
        if (c >= 0x41 && c <= 0x5a) c += 0x20;
        // Letters, digits, '-', '_' and '.': anything else is not a host name (and never reaches a file name).
        if (
          !((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || c === 0x2e)
        ) {
          return '';
        }
        name += String.fromCharCode(c);
      }
      return name;
    }
    p += len;
  }
  return '';
}
