/**
 * HPACK (RFC 7541): the header compression of HTTP/2. One {@link HpackDecoder} and one {@link HpackEncoder} per
 * connection direction; each keeps its dynamic table. Every failure of the decoder is an {@link HpackError},
 * which the connection answers with a COMPRESSION_ERROR (RFC 9113 §4.3): a decoder that failed is out of step
 * with its peer for good.
 */
import { writeLatin1 } from '../../core/index.ts';
import { type HuffmanError, huffmanDecode, huffmanEncode, huffmanLength } from './huffman.ts';

/** RFC 7541 Appendix A: index 1 to 61. */
// biome-ignore format: one entry a line reads against the appendix
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''],
  ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''],
  ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''],
  ['last-modified', ''], ['link', ''], ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''],
  ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''], ['retry-after', ''],
  ['server', ''], ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''],
  ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC_TABLE.length;

/** An entry's size in the table: name and value octets plus 32 (RFC 7541 §4.1). */
function entrySize(name: string, value: string): number {
  return Buffer.byteLength(name, 'latin1') + Buffer.byteLength(value, 'latin1') + 32;
}

/** A decoding failure (the connection answers COMPRESSION_ERROR). */
export class HpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HpackError';
  }
}

/** The dynamic table (RFC 7541 §2.3.2, §4): newest first, evicted from the oldest, sizes per §4.1. */
class DynamicTable {
  private names: string[] = [];
  private values: string[] = [];
  private sizes: number[] = [];
  /** Ring position of the newest entry and count (entries live at head, head-1, ... modulo capacity). */
  private head = -1;
  length = 0;
  size = 0;
  maxSize: number;

  constructor(maxSize: number) {
    this.maxSize = maxSize;
  }

  private slot(i: number): number {
    const cap = this.names.length;
    return (((this.head - i) % cap) + cap) % cap;
  }

  name(i: number): string {
    return this.names[this.slot(i)]!;
  }
  value(i: number): string {
    return this.values[this.slot(i)]!;
  }

  add(name: string, value: string): void {
    const size = entrySize(name, value);
    // An entry larger than the table empties it and is not added (§4.4).
    while (this.length > 0 && this.size + size > this.maxSize) this.evict();
    if (size > this.maxSize) return;
    if (this.length === this.names.length) this.grow();
    this.head = (this.head + 1) % this.names.length;
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.sizes[this.head] = size;
    this.length++;
    this.size += size;
  }

  setMaxSize(max: number): void {
    this.maxSize = max;
    while (this.size > max) this.evict();
  }

  private evict(): void {
    const oldest = this.slot(this.length - 1);
    this.size -= this.sizes[oldest]!;
    this.names[oldest] = this.values[oldest] = '';
    this.length--;
  }

  private grow(): void {
    const cap = Math.max(8, this.names.length * 2);
    const names: string[] = new Array(cap);
    const values: string[] = new Array(cap);
    const sizes: number[] = new Array(cap);
    for (let i = 0; i < this.length; i++) {
      const from = this.slot(this.length - 1 - i);
      names[i] = this.names[from]!;
      values[i] = this.values[from]!;
      sizes[i] = this.sizes[from]!;
    }
    this.names = names;
    this.values = values;
    this.sizes = sizes;
    this.head = this.length - 1;
  }
}

/** A decoded field: name, value, and whether it was sent never-indexed (§6.2.3: keep it so on the next hop). */
export interface HeaderField {
  name: string;
  value: string;
  sensitive: boolean;
}

/** Limits of a decoder (what the connection advertised, and what it accepts at all). */
export interface DecoderLimits {
  /** SETTINGS_HEADER_TABLE_SIZE we advertise: the most a size update may ask for. Default 4096. */
  maxTableSize?: number;
  /**
   * Most decoded bytes a header block may hold (names + values + 32 per field, SETTINGS_MAX_HEADER_LIST_SIZE):
   * beyond it decoding stops with {@link HeaderListTooLarge} before more strings are made. Default 64 KiB.
   */
  maxHeaderListSize?: number;
}

/** The block decoded past `maxHeaderListSize`; the table is in step (the connection may answer 431 on the stream). */
export class HeaderListTooLarge extends HpackError {}

/** Decodes header blocks (RFC 7541 §6); one per connection, fed whole blocks in order. */
export class HpackDecoder {
  private readonly table: DynamicTable;
  private readonly limit: number;
  private readonly maxListSize: number;
  private scratch = Buffer.allocUnsafe(4096);
  /** Read position, during `decode`. */
  private p = 0;

  constructor(limits: DecoderLimits = {}) {
    this.limit = limits.maxTableSize ?? 4096;
    this.maxListSize = limits.maxHeaderListSize ?? 64 * 1024;
    this.table = new DynamicTable(this.limit);
  }

  /** The dynamic table's size now (octets, §4.1). */
  get tableSize(): number {
    return this.table.size;
  }

  /** Decodes one whole header block; throws {@link HpackError} (the table is then unusable). */
  decode(block: Uint8Array, start = 0, end = block.length): HeaderField[] {
    const out: HeaderField[] = [];
    this.p = start;
    let listSize = 0;
    let fieldsSeen = false;
    while (this.p < end) {
      const b = block[this.p]!;
      let name: string;
      let value: string;
      let sensitive = false;
      if ((b & 0x80) !== 0) {
        // §6.1 indexed field
        const index = this.integer(block, end, 7);
        if (index === 0) throw new HpackError('index 0 in an indexed field');
        name = this.nameAt(index);
        value = this.valueAt(index);
      } else if ((b & 0xc0) === 0x40) {
        // §6.2.1 literal with incremental indexing
        const index = this.integer(block, end, 6);
        name = index === 0 ? this.string(block, end) : this.nameAt(index);
        value = this.string(block, end);
        this.table.add(name, value);
      } else if ((b & 0xe0) === 0x20) {
        // §6.3 dynamic table size update: only before the block's first field
        if (fieldsSeen) throw new HpackError('a table size update after a field');
        const size = this.integer(block, end, 5);
        if (size > this.limit)
          throw new HpackError(`a table size update to ${size}, above the ${this.limit} allowed`);
        this.table.setMaxSize(size);
        continue;
      } else {
        // §6.2.2 without indexing (0000), §6.2.3 never indexed (0001)
        sensitive = (b & 0x10) !== 0;
        const index = this.integer(block, end, 4);
        name = index === 0 ? this.string(block, end) : this.nameAt(index);
        value = this.string(block, end);
      }
      fieldsSeen = true;
      listSize += name.length + value.length + 32;
      // Past the limit the block is still decoded to its end (the dynamic table must stay in step with the
      // peer's, so the connection survives a 431), but no field is kept: a small block that references a
      // big entry many times (an HPACK bomb) costs its own length in work, not the list it expands to.
      if (listSize <= this.maxListSize) out.push({ name, value, sensitive });
    }
    if (listSize > this.maxListSize) {
      throw new HeaderListTooLarge(`the header list passed ${this.maxListSize} bytes`);
    }
    return out;
  }

  private nameAt(index: number): string {
    if (index <= STATIC_COUNT) return STATIC_TABLE[index - 1]![0];
    const i = index - STATIC_COUNT - 1;
    if (i >= this.table.length) throw new HpackError(`index ${index} beyond the tables`);
    return this.table.name(i);
  }

  private valueAt(index: number): string {
    if (index <= STATIC_COUNT) return STATIC_TABLE[index - 1]![1];
    const i = index - STATIC_COUNT - 1;
    if (i >= this.table.length) throw new HpackError(`index ${index} beyond the tables`);
    return this.table.value(i);
  }

  /** §5.1: an integer with an `n`-bit prefix, at most 2^31 - 1 (larger is malformed here). */
  private integer(b: Uint8Array, end: number, n: number): number {
    const max = (1 << n) - 1;
    let value = b[this.p++]! & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      if (this.p >= end) throw new HpackError('an integer cut short');
      const byte = b[this.p++]!;
      value += (byte & 0x7f) * 2 ** shift;
      if (value > 0x7fffffff) throw new HpackError('an integer above 2^31 - 1');
      if ((byte & 0x80) === 0) return value;
      shift += 7;
    }
  }

  /** §5.2: a string literal, Huffman-coded or raw; bytes are latin1 (field values may be any octets). */
  private string(b: Uint8Array, end: number): string {
    if (this.p >= end) throw new HpackError('a string literal missing');
    const huffman = (b[this.p]! & 0x80) !== 0;
    const length = this.integer(b, end, 7);
    if (length > end - this.p) throw new HpackError('a string literal longer than its block');
    const start = this.p;
    this.p += length;
    // No limit here: a string is bounded by its block (which the connection bounds before buffering), and
    // it must be decoded even past the list limit for the table to stay in step (see `decode`).
    if (!huffman) return Buffer.from(b.buffer, b.byteOffset + start, length).toString('latin1');
    const room = Math.ceil((length * 8) / 5);
    if (this.scratch.length < room)
      this.scratch = Buffer.allocUnsafe(Math.max(room, this.scratch.length * 2));
    let n: number;
    try {
      n = huffmanDecode(b, start, start + length, this.scratch, 0);
    } catch (err) {
      throw new HpackError((err as HuffmanError).message);
    }
    return this.scratch.toString('latin1', 0, n);
  }
}

/** How the encoder treats one field. */
export type IndexingChoice = 'index' | 'no-index' | 'never';

/** Options of an encoder. */
export interface EncoderOptions {
  /**
   * Field names always sent never-indexed (§7.1.3), so no proxy down the line puts them in a table that a
   * compression-ratio attack could probe. Default `authorization`, `proxy-authorization`, `cookie` and
   * `set-cookie`; short `cookie` values are indexed when `cookie` is left out.
   */
  sensitive?: readonly string[];
  /** Values longer than this go without indexing (they would evict many small entries). Default 1024. */
  maxIndexedValue?: number;
}

const STATIC_NAME = new Map<string, number>();
/** Static entries by name, then value (two lookups, no key string made per field). */
const STATIC_PAIR = new Map<string, Map<string, number>>();
for (let i = STATIC_COUNT - 1; i >= 0; i--) {
  const [name, value] = STATIC_TABLE[i]!;
  STATIC_NAME.set(name, i + 1);
  let byValue = STATIC_PAIR.get(name);
  if (byValue === undefined) {
    byValue = new Map();
    STATIC_PAIR.set(name, byValue);
  }
  byValue.set(value, i + 1);
}

/** Encodes header blocks (RFC 7541 §6); one per connection direction. */
export class HpackEncoder {
  private readonly table = new DynamicTable(4096);
  private readonly sensitive: ReadonlySet<string>;
  private readonly maxIndexedValue: number;
  /** Dynamic entries by name then value, and by name: the insertion count when each was added. */
  private readonly pairs = new Map<string, Map<string, number>>();
  private pairCount = 0;
  private readonly names = new Map<string, number>();
  private inserted = 0;
  /** A size update owed at the start of the next block (the peer's SETTINGS_HEADER_TABLE_SIZE changed). */
  private pendingSize = -1;
  private pendingMin = -1;
  private buf = Buffer.allocUnsafe(1024);
  private p = 0;
  private bytes = Buffer.allocUnsafe(256);

  constructor(options: EncoderOptions = {}) {
    this.sensitive = new Set(
      options.sensitive ?? ['authorization', 'proxy-authorization', 'cookie', 'set-cookie'],
    );
    this.maxIndexedValue = options.maxIndexedValue ?? 1024;
  }

  /** The peer's SETTINGS_HEADER_TABLE_SIZE: the table shrinks now, and the next block says so (§4.2). */
  setMaxTableSize(size: number): void {
    if (size === this.table.maxSize && this.pendingSize < 0) return;
    this.pendingMin = this.pendingMin < 0 ? size : Math.min(this.pendingMin, size);
    this.pendingSize = size;
    this.table.setMaxSize(size);
    this.forgetEvicted();
  }

  /**
   * Encodes `fields` (names lower-case, values latin1 text) into a header block; the buffer returned is the
   * encoder's and valid until the next call.
   */
  encode(fields: readonly (readonly [string, string])[], never?: ReadonlySet<string>): Buffer {
    this.begin();
    for (const [name, value] of fields) this.field(name, value, never?.has(name) === true);
    return this.finish();
  }

  /** Starts a block field by field (no arrays of pairs): {@link add} each field, then {@link finish}. */
  begin(): void {
    this.p = 0;
    if (this.pendingSize >= 0) {
      // The smallest size since the last block first, then the final one (§4.2).
      if (this.pendingMin < this.pendingSize) this.integer(this.pendingMin, 5, 0x20);
      this.integer(this.pendingSize, 5, 0x20);
      this.pendingSize = this.pendingMin = -1;
    }
  }

  /** Adds a field to the block begun (name lower-case; `never` forces a never-indexed literal). */
  add(name: string, value: string, never = false): void {
    this.field(name, value, never);
  }

  /** The block begun, valid until the next `begin` or `encode`. */
  finish(): Buffer {
    return this.buf.subarray(0, this.p);
  }

  private field(name: string, value: string, forcedNever: boolean): void {
    const never = forcedNever || this.sensitive.has(name);
    if (!never) {
      const s = STATIC_PAIR.get(name)?.get(value);
      if (s !== undefined) {
        this.integer(s, 7, 0x80);
        return;
      }
      const d = this.pairs.get(name)?.get(value);
      if (d !== undefined) {
        this.integer(STATIC_COUNT + 1 + this.inserted - d, 7, 0x80);
        return;
      }
    }
    const nameIndex = STATIC_NAME.get(name) ?? this.dynamicName(name);
    const index =
      !never && value.length <= this.maxIndexedValue && entrySize(name, value) <= this.table.maxSize;
    if (index) this.integer(nameIndex, 6, 0x40);
    else this.integer(nameIndex, 4, never ? 0x10 : 0x00);
    if (nameIndex === 0) this.string(name);
    this.string(value);
    if (index) {
      this.table.add(name, value);
      this.inserted++;
      let byValue = this.pairs.get(name);
      if (byValue === undefined) {
        byValue = new Map();
        this.pairs.set(name, byValue);
      }
      byValue.set(value, this.inserted);
      this.pairCount++;
      this.names.set(name, this.inserted);
      this.forgetEvicted();
    }
  }

  private dynamicName(name: string): number {
    const d = this.names.get(name);
    return d === undefined ? 0 : STATIC_COUNT + 1 + this.inserted - d;
  }

  /** Drops map entries for what the table evicted (an entry n insertions old lives while n <= length). */
  private forgetEvicted(): void {
    const oldest = this.inserted - this.table.length; // insertion numbers <= this are gone
    if (this.pairCount <= this.table.length) return;
    for (const [name, byValue] of this.pairs) {
      for (const [value, n] of byValue) {
        if (n > oldest) continue;
        byValue.delete(value);
        this.pairCount--;
      }
      if (byValue.size === 0) this.pairs.delete(name);
    }
    for (const [k, n] of this.names) if (n <= oldest) this.names.delete(k);
  }

  private room(n: number): void {
    if (this.p + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.p + n));
    this.buf.copy(next, 0, 0, this.p);
    this.buf = next;
  }

  private integer(value: number, n: number, pattern: number): void {
    this.room(6);
    const max = (1 << n) - 1;
    if (value < max) {
      this.buf[this.p++] = pattern | value;
      return;
    }
    this.buf[this.p++] = pattern | max;
    let rest = value - max;
    while (rest >= 128) {
      this.buf[this.p++] = (rest % 128) + 128;
      rest = Math.floor(rest / 128);
    }
    this.buf[this.p++] = rest;
  }

  /** A string literal, Huffman-coded unless that is longer (the RFC's examples code ties too). */
  private string(text: string): void {
    const len = text.length;
    if (this.bytes.length < len) this.bytes = Buffer.allocUnsafe(Math.max(len, this.bytes.length * 2));
    writeLatin1(this.bytes, text, 0);
    const coded = huffmanLength(this.bytes, 0, len);
    if (coded <= len) {
      this.integer(coded, 7, 0x80);
      this.room(coded);
      this.p = huffmanEncode(this.bytes, 0, len, this.buf, this.p);
    } else {
      this.integer(len, 7, 0x00);
      this.room(len);
      this.bytes.copy(this.buf, this.p, 0, len);
      this.p += len;
    }
  }
}
