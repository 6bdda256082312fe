/**
 * Byte classes of RFC 9110/9112, as 256-entry tables so the parser tests a byte with one load.
 */

function table(pred: (b: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let b = 0; b < 256; b++) t[b] = pred(b) ? 1 : 0;
  return t;
}

const isAlpha = (b: number) => (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;

/** tchar: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
export const TCHAR = table(
  (b) => isAlpha(b) || isDigit(b) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(b)),
);

/** field-value bytes: VCHAR, obs-text, SP and HTAB (no CTLs: NUL, CR, LF and the rest are refused). */
export const FIELD_VALUE = table((b) => b === 0x09 || b === 0x20 || (b >= 0x21 && b <= 0x7e) || b >= 0x80);

/** request-target bytes: visible ASCII only (RFC 3986 URIs are ASCII; llhttp refuses the rest too). */
export const TARGET = table((b) => b >= 0x21 && b <= 0x7e);

/** Hex digit values, -1 elsewhere. */
export const HEX = (() => {
  const t = new Int8Array(256).fill(-1);
  for (let b = 0; b < 256; b++) {
    if (isDigit(b)) t[b] = b - 0x30;
    else if (b >= 0x41 && b <= 0x46) t[b] = b - 0x41 + 10;
    else if (b >= 0x61 && b <= 0x66) t[b] = b - 0x61 + 10;
  }
  return t;
})();

/** ASCII lower-casing of a byte. */
export const LOWER = (() => {
  const t = new Uint8Array(256);
  for (let b = 0; b < 256; b++) t[b] = b >= 0x41 && b <= 0x5a ? b + 0x20 : b;
  return t;
})();

/** qdtext of a quoted-string: HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text. */
export const QDTEXT = table(
  (b) =>
    b === 0x09 ||
    b === 0x20 ||
    b === 0x21 ||
    (b >= 0x23 && b <= 0x5b) ||
    (b >= 0x5d && b <= 0x7e) ||
    b >= 0x80,
);

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HT = 0x09;
export const COLON = 0x3a;

/** Whether bytes [start, end) of `buf` equal the lower-case ASCII `lower`, ignoring case. */
export function equalsLower(buf: Uint8Array, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    if (LOWER[buf[start + i]!] !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** Whether the `name.length` bytes of `buf` at `start` equal `name`, ASCII case-insensitively. */
export function equalsIgnoreCase(buf: Uint8Array, start: number, name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c > 0x7f || LOWER[buf[start + i]!] !== LOWER[c]) return false;
  }
  return true;
}
