/**
 * HPACK's static Huffman code (RFC 7541 §5.2, Appendix B). The appendix's code is canonical: codes of one
 * length are consecutive in symbol order and each length continues where the shorter one ended. So the table
 * below is the appendix's column of code lengths, one per symbol (0-255, then EOS), and the codes are derived
 * from it; a mis-transcribed length would break the derivation's end check (EOS must be thirty 1 bits).
 *
 * Decoding reads four bits at a time through a state machine built here from the code (states are the
 * inner nodes of the code tree), so a byte costs two table reads. Encoding writes each symbol's code.
 */

// biome-ignore format: one row per 16 symbols, read against RFC 7541 Appendix B
const LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //   0-15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //  16-31
   6, 10, 10, 12, 13,  6,  8, 11, 10, 10,  8, 11,  8,  6,  6,  6, //  32-47  ' ' .. '/'
   5,  5,  5,  6,  6,  6,  6,  6,  6,  6,  7,  8, 15,  6, 12, 10, //  48-63  '0' .. '?'
  13,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, //  64-79  '@' .. 'O'
   7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  8, 13, 19, 13, 14,  6, //  80-95  'P' .. '_'
  15,  5,  6,  5,  6,  5,  6,  6,  6,  5,  7,  7,  6,  6,  6,  5, //  96-111 '`' .. 'o'
   6,  7,  6,  5,  5,  6,  7,  7,  7,  7,  7, 15, 11, 14, 13, 28, // 112-127 'p' .. DEL
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128-143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144-159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160-175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176-191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192-207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208-223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224-239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240-255
  30, // EOS
];

const EOS = 256;

/** Each symbol's code (right-aligned) and its length in bits. */
export const CODES = new Uint32Array(257);
export const BITS = new Uint8Array(257);

(() => {
  const order = Array.from({ length: 257 }, (_, s) => s).sort((a, b) => LENGTHS[a]! - LENGTHS[b]! || a - b);
  let code = 0;
  let len = LENGTHS[order[0]!]!;
  for (const sym of order) {
    const l = LENGTHS[sym]!;
    code *= 2 ** (l - len);
    len = l;
    CODES[sym] = code;
    BITS[sym] = l;
    code++;
  }
  if (CODES[EOS] !== 0x3fffffff || BITS[EOS] !== 30)
    throw new Error('HPACK Huffman table: lengths do not match RFC 7541');
})();

// ---- decoding state machine -------------------------------------------------------------------------

const F_EMIT = 1; // this step completed a symbol
const F_ACCEPT = 2; // the input may end here (at a symbol boundary, or inside the EOS prefix under 8 bits)
const F_FAIL = 4; // the bits spell EOS (or more of its prefix than padding allows): malformed

/** Per state and nibble: next state (bits 0-7), symbol (bits 8-15), flags (bits 16-18). */
const STEP = new Uint32Array(256 * 16);

(() => {
  // The code tree: node 0 is the root; children[2n] / children[2n+1] for bit 0 / 1; a leaf is -(sym + 1).
  const left: number[] = [0];
  const right: number[] = [0];
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    let node = 0;
    for (let i = BITS[sym]! - 1; i >= 0; i--) {
      const bit = (CODES[sym]! >>> i) & 1;
      const branch = bit === 0 ? left : right;
      if (i === 0) {
        branch[node] = -(sym + 1);
        break;
      }
      let next = branch[node]!;
      if (next <= 0) {
        next = nodes++;
        left[next] = 0;
        right[next] = 0;
        branch[node] = next;
      }
      node = next;
    }
  }
  if (nodes !== 256) throw new Error(`HPACK Huffman table: ${nodes} inner nodes, not 256`);
  // A state is an inner node; it may end the input if its path from the root is at most seven 1 bits.
  const ones = new Int8Array(256).fill(-1); // length of the all-ones path to the node, or -1
  ones[0] = 0;
  let n = 0;
  for (let depth = 1; depth <= 7; depth++) {
    n = right[n]!;
    ones[n] = depth;
  }
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let sym = 0;
      let flags = 0;
      for (let i = 3; i >= 0; i--) {
        const next = ((nibble >>> i) & 1) === 0 ? left[node]! : right[node]!;
        if (next < 0) {
          const s = -next - 1;
          if (s === EOS) {
            flags |= F_FAIL;
            break;
          }
          sym = s;
          flags |= F_EMIT;
          node = 0;
        } else node = next;
      }
      if ((flags & F_FAIL) === 0 && ones[node]! >= 0) flags |= F_ACCEPT;
      STEP[state * 16 + nibble] = node | (sym << 8) | (flags << 16);
    }
  }
})();

/** Why a Huffman string is refused. */
export class HuffmanError extends Error {}

/**
 * Decodes `src[start, end)` into `out` from `at`; returns the end of the output. `out` must hold at least
 * `(end - start) * 8 / 5` bytes (the shortest code is 5 bits). Throws {@link HuffmanError} on EOS, on
 * padding of 8 bits or more, or padding that is not the start of EOS.
 */
export function huffmanDecode(
  src: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  at: number,
): number {
  let state = 0;
  let accept = true;
  let p = at;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    let step = STEP[state * 16 + (byte >>> 4)]!;
    if ((step & (F_FAIL << 16)) !== 0) throw new HuffmanError('EOS in a Huffman string');
    if ((step & (F_EMIT << 16)) !== 0) out[p++] = (step >>> 8) & 0xff;
    state = step & 0xff;
    step = STEP[state * 16 + (byte & 0x0f)]!;
    if ((step & (F_FAIL << 16)) !== 0) throw new HuffmanError('EOS in a Huffman string');
    if ((step & (F_EMIT << 16)) !== 0) out[p++] = (step >>> 8) & 0xff;
    state = step & 0xff;
    accept = (step & (F_ACCEPT << 16)) !== 0;
  }
  if (!accept) throw new HuffmanError('bad padding at the end of a Huffman string');
  return p;
}

/** The length of `text` (bytes, latin1 or UTF-8 already) Huffman-coded, padding included. */
export function huffmanLength(src: Uint8Array, start: number, end: number): number {
  let bits = 0;
  for (let i = start; i < end; i++) bits += BITS[src[i]!]!;
  return Math.ceil(bits / 8);
}

/** Encodes `src[start, end)` into `out` at `at`, padded with 1 bits (EOS's start); returns the end. */
export function huffmanEncode(
  src: Uint8Array,
  start: number,
  end: number,
  out: Uint8Array,
  at: number,
): number {
  let acc = 0; // pending bits, fewer than 8 between symbols (a double holds 8 + 30 bits exactly)
  let pending = 0;
  let p = at;
  for (let i = start; i < end; i++) {
    const sym = src[i]!;
    const bits = BITS[sym]!;
    acc = acc * 2 ** bits + CODES[sym]!;
    pending += bits;
    while (pending >= 8) {
      pending -= 8;
      const shift = 2 ** pending;
      const byte = Math.floor(acc / shift);
      out[p++] = byte;
      acc -= byte * shift;
    }
  }
  if (pending > 0) out[p++] = (acc << (8 - pending)) | (0xff >>> pending);
  return p;
}
