import { randomFillSync } from 'node:crypto';

/**
 * Session-ticket keys in shared memory: made once by the engine's thread and read by every loop, so a ticket
 * sealed on one loop opens on another. The engine rotates them on a schedule; the previous keys stay readable,
 * so tickets sealed just before a rotation still resume (see `TlsAcceptor`, which routes a ticket to the
 * context holding its key). One writer (the engine's thread), a sequence lock for readers: the sequence is odd
 * while keys are written, and a reader copies again when the sequence moved under it.
 *
 * Layout: Int32 sequence at byte 0; current keys at byte 8, previous keys at byte 56 (48 bytes each, the
 * format of Node's `setTicketKeys`: key name 16, HMAC secret 16, AES key 16).
 */

/** Length of one set of ticket keys (Node's `ticketKeys`). */
export const TICKET_KEYS_LENGTH = 48;
const CURRENT = 8;
const PREVIOUS = CURRENT + TICKET_KEYS_LENGTH;
const SIZE = PREVIOUS + TICKET_KEYS_LENGTH;

/** @internal Allocates the shared block with fresh current and previous keys. */
export function createTicketKeys(): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(SIZE);
  const bytes = new Uint8Array(sab);
  randomFillSync(bytes, CURRENT, TICKET_KEYS_LENGTH);
  randomFillSync(bytes, PREVIOUS, TICKET_KEYS_LENGTH);
  Atomics.store(new Int32Array(sab, 0, 1), 0, 2);
  return sab;
}

/** @internal Rotates: the current keys become the previous ones, and new current keys are drawn (one writer). */
export function rotateTicketKeys(sab: SharedArrayBuffer): void {
  const seq = new Int32Array(sab, 0, 1);
  const bytes = new Uint8Array(sab);
  Atomics.add(seq, 0, 1); // odd: writing
  bytes.copyWithin(PREVIOUS, CURRENT, CURRENT + TICKET_KEYS_LENGTH);
  randomFillSync(bytes, CURRENT, TICKET_KEYS_LENGTH);
  Atomics.add(seq, 0, 1); // even: done
}

/** @internal A loop's view of the shared keys. */
export class TicketKeyReader {
  private readonly seq: Int32Array;
  private readonly bytes: Uint8Array;
  /** The sequence of the keys last copied out. */
  private seen = -1;
  /** The keys last copied out (current, previous). */
  readonly current = Buffer.alloc(TICKET_KEYS_LENGTH);
  readonly previous = Buffer.alloc(TICKET_KEYS_LENGTH);

  constructor(sab: SharedArrayBuffer) {
    this.seq = new Int32Array(sab, 0, 1);
    this.bytes = new Uint8Array(sab);
  }

  /** Copies the keys if they changed since the last call; true when they did. Cheap when they did not. */
  refresh(): boolean {
    for (;;) {
      const before = Atomics.load(this.seq, 0);
      if (before === this.seen) return false;
      if ((before & 1) === 1) continue; // a rotation is being written: a few stores, so spin
      this.current.set(this.bytes.subarray(CURRENT, CURRENT + TICKET_KEYS_LENGTH));
      this.previous.set(this.bytes.subarray(PREVIOUS, PREVIOUS + TICKET_KEYS_LENGTH));
      if (Atomics.load(this.seq, 0) === before) {
        this.seen = before;
        return true;
      }
    }
  }
}
