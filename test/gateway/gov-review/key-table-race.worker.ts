// Worker for key-table-race.test.ts: rounds of a fresh key each, started together by a barrier.
import { parentPort, workerData } from 'node:worker_threads';
import { hashKey, KEY_SEED, SharedKeyTable } from 'netloom/gateway';

const {
  table: buffer,
  sync,
  id,
  rounds,
  perRound,
} = workerData as {
  table: SharedArrayBuffer;
  sync: SharedArrayBuffer;
  id: number;
  rounds: number;
  perRound: number;
};
const table = new SharedKeyTable(buffer);
const s = new Int32Array(sync);
// s[0]: the round both may start; s[1 + id]: the round this worker finished.
let short = 0;
const shortRounds: number[] = [];
for (let r = 1; r <= rounds; r++) {
  while (Atomics.load(s, 0) < r) Atomics.wait(s, 0, Atomics.load(s, 0), 50);
  const key = hashKey(KEY_SEED, `round-${r}`, { a: 0, b: 0 });
  for (let i = 0; i < perRound; i++) table.slidingWindow(key, 1e9, 600_000);
  Atomics.store(s, 1 + id, r);
  Atomics.notify(s, 1 + id);
  if (id === 0) {
    // Wait for the other worker, then read the count: 2 * perRound were counted (this one makes one more).
    while (Atomics.load(s, 2) < r) Atomics.wait(s, 2, Atomics.load(s, 2), 50);
    const o = table.slidingWindow(key, 1e9, 600_000);
    const counted = 1e9 - o.remaining - 1;
    if (counted !== 2 * perRound) {
      short++;
      if (shortRounds.length < 5) shortRounds.push(counted);
    }
    Atomics.store(s, 0, r + 1);
    Atomics.notify(s, 0);
  }
}
parentPort!.postMessage({ id, short, shortRounds });
