/**
 * The loop's buffer arena: power-of-two slabs from 4 KiB to 4 MiB, kept on per-size free lists and handed
 * out LIFO so the slab a connection gets is usually the one still warm in cache. A loop owns one arena and
 * only its thread touches it, so there is no locking.
 *
 * Slabs are never shared: each has its own ArrayBuffer, which lets {@link Arena.owns} tell an engine-owned
 * view from a user buffer in O(1).
 */

const MIN_SHIFT = 12; // 4 KiB
const MAX_SHIFT = 22; // 4 MiB
const POISON = 0xde;
const SMALL_SHIFT = 16; // 64 KiB

/** Slab sizes a caller can ask for are rounded up to these classes. */
export const MIN_SLAB = 1 << MIN_SHIFT;
export const MAX_SLAB = 1 << MAX_SHIFT;

/**
 * Memory of every arena on this thread: loops of engines sharing a thread (one loop each) may write each
 * other's lent views, and a view of any loop's read buffer or slab must be copied, not kept by reference.
 */
const owned = new WeakSet<ArrayBufferLike>();

export class Arena {
  private readonly free: Buffer[][] = [];
  private readonly maxFreePerClass: number;
  private readonly poison: boolean;
  /** Slabs created since the arena was made (allocation pressure; steady state stops growing). */
  allocated = 0;
  /** Slabs handed out and not yet returned or abandoned. */
  outstanding = 0;

  constructor(maxFreePerClass = 64, poison = false) {
    this.maxFreePerClass = maxFreePerClass;
    this.poison = poison;
    for (let i = MIN_SHIFT; i <= MAX_SHIFT; i++) this.free.push([]);
  }

  /** A slab of at least `size` bytes; its contents are garbage. */
  take(size: number): Buffer {
    const shift = size <= MIN_SLAB ? MIN_SHIFT : 32 - Math.clz32(size - 1);
    this.outstanding++;
    if (shift > MAX_SHIFT) {
      // Beyond the largest class: a one-off buffer that never returns to a free list.
      this.allocated++;
      const big = Buffer.allocUnsafeSlow(size);
      owned.add(big.buffer);
      return big;
    }
    const list = this.free[shift - MIN_SHIFT]!;
    const slab = list.pop();
    if (slab !== undefined) return slab;
    this.allocated++;
    const fresh = Buffer.allocUnsafeSlow(1 << shift);
    owned.add(fresh.buffer);
    return fresh;
  }

  /**
   * A buffer the arena lends for the life of its owner (the loop's read buffer): never given back, not counted
   * in `outstanding`, and recognised by {@link owns}.
   */
  permanent(size: number): Buffer {
    this.allocated++;
    const buf = Buffer.allocUnsafeSlow(size);
    owned.add(buf.buffer);
    return buf;
  }

  /** Returns a slab taken from this arena. The caller must hold no view of it afterwards. */
  give(slab: Buffer): void {
    this.outstanding--;
    if (this.poison) slab.fill(POISON);
    const len = slab.length;
    if (len > MAX_SLAB || (len & (len - 1)) !== 0) return;
    const shift = 31 - Math.clz32(len);
    const list = this.free[shift - MIN_SHIFT];
    // Small slabs are what every connection stages its writes in: with writes flushed once per I/O phase,
    // as many can be out at once as connections were ready, so keep more of them than of the large ones.
    const cap = shift <= SMALL_SHIFT ? this.maxFreePerClass * 8 : this.maxFreePerClass;
    if (list !== undefined && list.length < cap) list.push(slab);
  }

  /** Forgets a slab that the socket still holds; garbage collection reclaims it. */
  abandon(): void {
    this.outstanding--;
  }

  /** Whether `view` points into memory an arena of this thread lends out (such views must be copied before keeping). */
  owns(view: ArrayBufferView): boolean {
    return owned.has(view.buffer);
  }
}
