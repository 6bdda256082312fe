// Round-3 review of 7153883 (rate-limit `concurrency` places survive loop crashes): a loop's journal looks
// a key up in only JOURNAL_PROBE (16) entries from its hash (gateway/shared-keys.ts `journalAdd`), so well
// before the 1,024 keys the README promises ("each loop journals the keys it holds, 1,024 keys for each of
// the first 64 loops") keys fall out of the journal, and their places stay taken after the loop dies.
// Worse, a key that found no entry once and one later is journaled short: the release of its unjournaled
// place takes the journaled one away, so even a key that IS in the journal when the loop dies keeps a
// place taken for good (the client is refused from then on).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createKeyTable, hashKey, KEY_SEED, SharedKeyTable } from 'netloom/gateway';

/** A per-client concurrency key as the rate-limit filter makes it (route api, key ip). */
function clientKey(i: number) {
  const seed = hashKey(KEY_SEED, 'api\u00000\u0000cc\u0000concurrency', { a: 0, b: 0 });
  const ip = `10.0.${i >> 8}.${i & 255}`;
  return hashKey(hashKey(seed, '\u0000', { a: 0, b: 0 }), ip, { a: 0, b: 0 });
}

describe('round3-review: the crashed loop journal and its bounded probe', { timeout: 10_000 }, () => {
  test('1,024 clients in flight on a loop that dies: every place comes back (README: 1,024 keys a loop)', () => {
    const buffer = createKeyTable();
    const loop0 = new SharedKeyTable(buffer, 0);
    const keys = Array.from({ length: 1024 }, (_, i) => clientKey(i));
    for (const k of keys) assert.equal(loop0.acquire(k, 4).allowed, true);
    // Loop 0 crashes with all of them in flight; its successor gives its places back.
    const given = SharedKeyTable.reclaimInFlight(buffer, 0);
    const main = new SharedKeyTable(buffer);
    const stuck = keys.filter((k) => main.inFlight(k) > 0).length;
    assert.equal(stuck, 0, `${stuck} of 1024 keys keep a place taken by the dead loop (${given} given back)`);
  });

  test('a key journaled late is journaled short: its place stays taken after the crash', () => {
    const buffer = createKeyTable();
    const loop0 = new SharedKeyTable(buffer, 0);
    // 17 keys whose journal entries start at the same index (a % 1024), in distinct table slots.
    const key = (i: number) => ({ a: 5 + 1024 * i, b: 77 });
    for (let i = 0; i < 16; i++) assert.equal(loop0.acquire(key(i), 4).allowed, true);
    const x = key(16);
    assert.equal(loop0.acquire(x, 4).allowed, true); // request 1 of x: no journal entry was free
    loop0.release(key(0)); // an entry frees up
    assert.equal(loop0.acquire(x, 4).allowed, true); // request 2 of x: journaled (1)
    loop0.release(x); // request 1 of x completes: takes the journal's 1 away
    // Loop 0 dies with request 2 of x (and 15 others) in flight.
    SharedKeyTable.reclaimInFlight(buffer, 0);
    const main = new SharedKeyTable(buffer);
    for (let i = 1; i < 16; i++) assert.equal(main.inFlight(key(i)), 0, `key ${i}`);
    assert.equal(main.inFlight(x), 0, 'the place of request 2 of x, held by the dead loop, came back');
  });
});
