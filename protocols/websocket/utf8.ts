/**
 * Incremental UTF-8 validation (RFC 3629): fed the bytes of a text message as they arrive, fragment by
 * fragment and read by read, it fails at the first byte that cannot belong to well-formed UTF-8 (an
 * overlong form, a surrogate, a code point past U+10FFFF, a stray continuation), not at the message's end.
 */
export class Utf8Validator {
  /** Continuation bytes still expected. */
  private need = 0;
  /** Bounds of the next continuation byte (tighter than 0x80-0xBF right after some lead bytes). */
  private lo = 0x80;
  private hi = 0xbf;

  reset(): void {
    this.need = 0;
    this.lo = 0x80;
    this.hi = 0xbf;
  }

  /** Validates `buf[start, end)`; false at the first invalid byte. */
  feed(buf: Uint8Array, start: number, end: number): boolean {
    let need = this.need;
    let lo = this.lo;
    let hi = this.hi;
    for (let i = start; i < end; i++) {
      const b = buf[i]!;
      if (need === 0) {
        if (b < 0x80) continue;
        if (b >= 0xc2 && b <= 0xdf) need = 1;
        else if (b >= 0xe0 && b <= 0xef) {
          need = 2;
          if (b === 0xe0)
            lo = 0xa0; // no overlong three-byte forms
          else if (b === 0xed) hi = 0x9f; // no surrogates
        } else if (b >= 0xf0 && b <= 0xf4) {
          need = 3;
          if (b === 0xf0)
            lo = 0x90; // no overlong four-byte forms
          else if (b === 0xf4) hi = 0x8f; // nothing past U+10FFFF
        } else {
          this.need = need;
          return false; // 0x80-0xC1 (continuation, overlong two-byte) and 0xF5-0xFF
        }
        continue;
      }
      if (b < lo || b > hi) {
        this.need = need;
        return false;
      }
      lo = 0x80;
      hi = 0xbf;
      need--;
    }
    this.need = need;
    this.lo = lo;
    this.hi = hi;
    return true;
  }

  /** Whether the text so far ends on a whole character (the message may end here). */
  get complete(): boolean {
    return this.need === 0;
  }
}
