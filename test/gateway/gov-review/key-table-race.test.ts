// Review (gov-review): two loops (worker threads) meeting a new key whose 8 slots are all taken both pick
// the same least recently used victim; the second to re-lock it claims it again and clears what the first
// had counted (lock() re-checks only IN_FLIGHT, not whether the victim is still the key it chose, nor
// whether the new key got a slot meanwhile). A budget shared across loops then loses counts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { createKeyTable } from 'netloom/gateway';

test('key table: a new key met by 2 loops at once keeps every count (no double claim of the victim)', {
  timeout: 60_000,
}, async () => {
  const table = createKeyTable(8); // 8 slots: every key probes all of them, so each new round's key evicts
  const sync = new SharedArrayBuffer(16);
  const s = new Int32Array(sync);
  Atomics.store(s, 0, 1);
  const rounds = 20_000;
  const perRound = 20;
  const results = await Promise.all(
    [0, 1].map(
      (id) =>
        new Promise<{ id: number; short: number; shortRounds: number[] }>((resolve, reject) => {
          const w = new Worker(new URL('./key-table-race.worker.ts', import.meta.url), {
            workerData: { table, sync, id, rounds, perRound },
          });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );
  const short = results.find((r) => r.id === 0)!;
  assert.equal(
    short.short,
    0,
    `${short.short} of ${rounds} rounds lost counts (e.g. counted ${short.shortRounds.join(', ')} of ${2 * perRound})`,
  );
});
