/**
 * Two small pieces of a server connection's memory: a budget that bounds floods (frames that do no work,
 * streams reset before they finish), and the ring of recently closed streams that tells frames still in
 * flight (ignored) from misuse (errors).
 */

/** A budget of events per second with a burst (a token bucket on the loop clock). */
export class Budget {
  private tokens: number;
  private at: number;
  private readonly burst: number;
  private readonly perSecond: number;

  constructor(burst: number, perSecond: number, now: number) {
    this.burst = burst;
    this.perSecond = perSecond;
    this.tokens = burst;
    this.at = now;
  }

  /** Takes one; false when the budget is spent. */
  take(now: number): boolean {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.perSecond) / 1000);
      this.at = now;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** How a remembered stream closed. */
export const CLOSED_NORMAL = 1;
/** We reset the stream: frames the peer sent before it knew are ignored (RFC 9113 §5.1, "closed"). */
export const CLOSED_BY_US = 2;
export const CLOSED_BY_PEER = 3;

/** The last `size` streams closed and how, in a ring (looked up only for frames on streams not open). */
export class ClosedStreams {
  private readonly ids: Int32Array;
  private readonly how: Uint8Array;
  private next = 0;

  constructor(size: number) {
    this.ids = new Int32Array(size);
    this.how = new Uint8Array(size);
  }

  remember(id: number, how: number): void {
    this.ids[this.next] = id;
    this.how[this.next] = how;
    this.next = (this.next + 1) % this.ids.length;
  }

  /** How stream `id` closed, or 0 when it is not remembered. */
  howClosed(id: number): number {
    for (let i = 0; i < this.ids.length; i++) if (this.ids[i] === id) return this.how[i]!;
    return 0;
  }
}
