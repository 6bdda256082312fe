/**
 * An upstream's retry budget (Linkerd's and Finagle's idea): retries may add at most `percent` of the
 * requests sent in the last `window`, plus `minPerSecond` so a quiet upstream still gets retried. During
 * an outage every first attempt fails, and without a budget each one would be tried `retries` more times,
 * multiplying the load on an upstream that is already down; with one, the extra load is bounded. Counted
 * per loop, in ten buckets over the window.
 */
import { z } from 'zod';
import { duration } from './config-fields.ts';

/** The `retryBudget` of an upstream. */
export const retryBudgetSettings = z
  .object({
    /** Retries allowed, as a percentage of the requests in the window. */
    percent: z.number().min(0).max(1000).default(20),
    /** Retries allowed a second regardless of the traffic. */
    minPerSecond: z.number().min(0).max(100_000).default(3),
    /** The window the counts cover, in milliseconds. */
    window: duration.min(1000).max(600_000).default(10_000),
  })
  .strict();

export type RetryBudgetSettings = z.output<typeof retryBudgetSettings>;

const BUCKETS = 10;

/** One upstream's budget on one loop. */
export class RetryBudget {
  private readonly settings: RetryBudgetSettings;
  private readonly width: number;
  private readonly requests = new Float64Array(BUCKETS);
  private readonly retries = new Float64Array(BUCKETS);
  private readonly epoch = new Float64Array(BUCKETS).fill(-1);
  /** Retries the budget refused (for the admin endpoint and tests). */
  refused = 0;

  constructor(settings: RetryBudgetSettings) {
    this.settings = settings;
    this.width = settings.window / BUCKETS;
  }

  private bucket(now: number): number {
    const e = Math.floor(now / this.width);
    const b = e % BUCKETS;
    if (this.epoch[b] !== e) {
      this.epoch[b] = e;
      this.requests[b] = 0;
      this.retries[b] = 0;
    }
    return b;
  }

  /** A request's first attempt. */
  request(now: number): void {
    this.requests[this.bucket(now)]!++;
  }

  /** Whether a retry fits the budget now; counts it if it does. */
  retry(now: number): boolean {
    const b = this.bucket(now);
    const e = Math.floor(now / this.width);
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < BUCKETS; i++) {
      if (this.epoch[i]! <= e - BUCKETS) continue;
      requests += this.requests[i]!;
      retries += this.retries[i]!;
    }
    const s = this.settings;
    const allowed = (s.minPerSecond * s.window) / 1000 + (requests * s.percent) / 100;
    if (retries + 1 > allowed) {
      this.refused++;
      return false;
    }
    this.retries[b]!++;
    return true;
  }
}
