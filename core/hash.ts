/**
 * 32-bit FNV-1a with a murmur3 finalizer: a fast, well-spread, stable hash of a string (FNV alone clusters on
 * short, similar keys). Not for security. Used for deterministic sampling and consistent hashing.
 */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
