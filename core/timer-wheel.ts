/**
 * A hashed timing wheel for per-connection timers (idle timeouts, deadlines, close linger). Connections are
 * the nodes themselves (intrusive links), so arming, re-arming and cancelling allocate nothing and cost O(1);
 * one interval per loop drives it, and only while something is armed.
 */

const SLOTS = 512;
const MASK = SLOTS - 1;

/** What the wheel needs on a node; the connection carries these fields. */
export interface WheelNode {
  /** Absolute time (ms) the node is due; read by the wheel, set by {@link TimerWheel.schedule}. */
  wheelAt: number;
  wheelPrev: WheelNode | null;
  wheelNext: WheelNode | null;
  /** Slot index, or -1 when not armed. */
  wheelSlot: number;
}

export class TimerWheel<N extends WheelNode> {
  private readonly heads: (N | null)[] = new Array(SLOTS).fill(null);
  private readonly resolution: number;
  private readonly fire: (node: N, now: number) => void;
  private cursor: number;
  private size = 0;
  private interval: NodeJS.Timeout | null = null;

  private readonly onTick: ((now: number) => void) | undefined;

  /**
   * `fire` runs for each node whose time has come, after the node is unlinked; `onTick`, if given, runs with
   * the current time at every tick of the driving interval (the loop keeps its coarse clock with it).
   */
  constructor(resolution: number, fire: (node: N, now: number) => void, onTick?: (now: number) => void) {
    this.resolution = resolution;
    this.fire = fire;
    this.onTick = onTick;
    this.cursor = Math.floor(Date.now() / resolution);
  }

  /** Arms (or re-arms) `node` for absolute time `at`. */
  schedule(node: N, at: number): void {
    if (node.wheelSlot !== -1) this.unlink(node);
    node.wheelAt = at;
    // Slot k is visited once now >= k * resolution, so a node goes to the first slot whose time is not
    // before `at` (rounding down would let the cursor pass it a moment early and strand it for a whole
    // revolution). A time already past lands in the next slot to be visited.
    const tick = Math.max(Math.ceil(at / this.resolution), this.cursor + 1);
    const slot = tick & MASK;
    const head = this.heads[slot] ?? null;
    node.wheelSlot = slot;
    node.wheelPrev = null;
    node.wheelNext = head;
    if (head !== null) head.wheelPrev = node;
    this.heads[slot] = node;
    this.size++;
    // Also after a dispose that left nodes armed: the next schedule drives the wheel again.
    if (this.interval === null) this.start();
  }

  /** Disarms `node` if armed. */
  cancel(node: N): void {
    if (node.wheelSlot !== -1) this.unlink(node);
  }

  /** Whether the driving interval runs (something is armed). */
  get running(): boolean {
    return this.interval !== null;
  }

  /** Stops the driving interval; armed nodes stay armed and fire again once a schedule restarts it. */
  dispose(): void {
    if (this.interval !== null) clearInterval(this.interval);
    this.interval = null;
  }

  private unlink(node: N): void {
    const prev = node.wheelPrev;
    const next = node.wheelNext;
    if (prev !== null) prev.wheelNext = next;
    else this.heads[node.wheelSlot] = next as N | null;
    if (next !== null) next.wheelPrev = prev;
    node.wheelPrev = null;
    node.wheelNext = null;
    node.wheelSlot = -1;
    this.size--;
  }

  private start(): void {
    this.cursor = Math.max(this.cursor, Math.floor(Date.now() / this.resolution) - 1);
    this.interval = setInterval(() => {
      const now = Date.now();
      this.onTick?.(now);
      this.advance(now);
    }, this.resolution);
    this.interval.unref();
  }

  /** Visits every slot from the cursor up to `now`, firing what is due. */
  advance(now: number): void {
    const target = Math.floor(now / this.resolution);
    const from = this.cursor;
    const steps = Math.min(target - from, SLOTS);
    // The cursor moves first: a node re-armed by a callback below (even for a time already past) lands
    // after the slots being swept, never in one already passed.
    if (target > from) this.cursor = target;
    for (let i = 1; i <= steps; i++) {
      const slot = (from + i) & MASK;
      // Take the due nodes out before running any callback: a callback may re-arm or cancel other nodes.
      let due: N[] | null = null;
      for (let node = this.heads[slot] ?? null; node !== null; node = node.wheelNext as N | null) {
        if (node.wheelAt > now) continue;
        if (due === null) due = [];
        due.push(node);
      }
      if (due === null) continue;
      for (const node of due) this.unlink(node);
      for (const node of due) this.fire(node, now);
    }
    if (this.size === 0) this.dispose();
  }
}
