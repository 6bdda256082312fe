// Balancers: round robin, smooth weighted round robin, least connections and consistent hashing, and
// the skipping of unhealthy, ejected and excluded targets that every one of them does.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type BalancedTarget,
  type Balancer,
  ConsistentHash,
  createBalancer,
  hash32,
  LeastConnections,
  RoundRobin,
  SmoothWeighted,
} from 'netloom/gateway';

interface T extends BalancedTarget {
  address: string;
}

function target(address: string, weight = 1): T {
  return { address, weight, active: 0, healthy: true, ejectedUntil: 0 };
}

const NOW = 1_000_000;

function picks(b: Balancer<T>, n: number, key?: (i: number) => string): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(b.pick(key?.(i), NOW, null)?.address ?? 'null');
  return out;
}

function counts(list: string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const x of list) c[x] = (c[x] ?? 0) + 1;
  return c;
}

describe('round robin', () => {
  test('cycles through targets in order, evenly', () => {
    const b = new RoundRobin([target('a'), target('b'), target('c')]);
    assert.deepEqual(picks(b, 7), ['a', 'b', 'c', 'a', 'b', 'c', 'a']);
    const fresh = new RoundRobin([target('a'), target('b'), target('c')]);
    assert.deepEqual(counts(picks(fresh, 2999)), { a: 1000, b: 1000, c: 999 });
  });

  test('ignores weights (that is weighted_round_robin)', () => {
    const b = new RoundRobin([target('a', 5), target('b', 1)]);
    assert.deepEqual(counts(picks(b, 100)), { a: 50, b: 50 });
  });
});

describe('smooth weighted round robin', () => {
  test('weights 5:1:1 give the nginx sequence a a b a c a a, repeating', () => {
    const b = new SmoothWeighted([target('a', 5), target('b', 1), target('c', 1)]);
    const seq = ['a', 'a', 'b', 'a', 'c', 'a', 'a'];
    assert.deepEqual(picks(b, 21), [...seq, ...seq, ...seq]);
  });

  test('every window of one period holds exactly the weights; no target runs more than needed', () => {
    const b = new SmoothWeighted([target('a', 5), target('b', 1), target('c', 1)]);
    const seq = picks(b, 700);
    for (let i = 0; i + 7 <= seq.length; i++)
      assert.deepEqual(counts(seq.slice(i, i + 7)), { a: 5, b: 1, c: 1 }, `window at ${i}`);
    // Smoothness: never the whole weight in one run (a,a,a,a,a,b,c); at most a,a | a,a across periods.
    assert.ok(!seq.join('').includes('aaaaa'));
    assert.ok(!seq.join('').includes('bb') && !seq.join('').includes('cc'));
  });

  test('proportions follow the weights for uneven weights too', () => {
    const b = new SmoothWeighted([target('a', 3), target('b', 2), target('c', 7)]);
    assert.deepEqual(counts(picks(b, 1200)), { a: 300, b: 200, c: 700 });
  });

  test('an unusable target drops out and the others keep their proportions', () => {
    const ts = [target('a', 5), target('b', 1), target('c', 1)];
    const b = new SmoothWeighted(ts);
    ts[0]!.healthy = false;
    assert.deepEqual(counts(picks(b, 100)), { b: 50, c: 50 });
    ts[0]!.healthy = true;
    ts[1]!.ejectedUntil = NOW + 1;
    assert.deepEqual(counts(picks(b, 60)), { a: 50, c: 10 });
  });
});

describe('least connections', () => {
  test('prefers the target with fewest requests in flight', () => {
    const ts = [target('a'), target('b'), target('c')];
    const b = new LeastConnections(ts);
    ts[0]!.active = 3;
    ts[1]!.active = 0;
    ts[2]!.active = 1;
    for (let i = 0; i < 5; i++) assert.equal(b.pick(undefined, NOW, null)?.address, 'b');
    ts[1]!.active = 2;
    assert.equal(b.pick(undefined, NOW, null)?.address, 'c');
  });

  test('load is relative to weight', () => {
    const ts = [target('a', 4), target('b', 1)];
    const b = new LeastConnections(ts);
    ts[0]!.active = 3; // 0.75
    ts[1]!.active = 1; // 1
    assert.equal(b.pick(undefined, NOW, null)?.address, 'a');
  });

  test('equal loads rotate, so idle targets share the load', () => {
    const b = new LeastConnections([target('a'), target('b'), target('c')]);
    assert.deepEqual(counts(picks(b, 300)), { a: 100, b: 100, c: 100 });
  });

  test('simulated in-flight requests: the idle target takes the new ones', () => {
    const ts = [target('a'), target('b')];
    const b = new LeastConnections(ts);
    // `a` is stuck with 10 long requests; the next 10 requests, each held open, all go to `b`.
    ts[0]!.active = 10;
    for (let i = 0; i < 10; i++) {
      const t = b.pick(undefined, NOW, null)!;
      assert.equal(t.address, 'b');
      t.active++;
    }
    assert.equal(b.pick(undefined, NOW, null)?.address !== undefined, true);
  });
});

describe('consistent hash', () => {
  const addresses = ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80', '10.0.0.4:80'];
  const keys = Array.from({ length: 30_000 }, (_, i) => `user-${i}`);

  function mapping(b: Balancer<T>): Map<string, string> {
    const m = new Map<string, string>();
    for (const k of keys) m.set(k, b.pick(k, NOW, null)!.address);
    return m;
  }

  test('the same key always maps to the same target (also across balancer instances)', () => {
    const a = new ConsistentHash(addresses.map((x) => target(x)));
    const b = new ConsistentHash([...addresses].reverse().map((x) => target(x)));
    for (const k of keys.slice(0, 2000)) {
      const first = a.pick(k, NOW, null)!.address;
      assert.equal(a.pick(k, NOW, null)!.address, first);
      assert.equal(b.pick(k, NOW, null)!.address, first, 'target order does not matter');
    }
  });

  test('keys spread roughly evenly over 3 targets (each within ±25% of a third)', () => {
    const b = new ConsistentHash(addresses.slice(0, 3).map((x) => target(x)));
    const c = counts([...mapping(b).values()]);
    assert.equal(Object.keys(c).length, 3);
    for (const [addr, n] of Object.entries(c))
      assert.ok(Math.abs(n - 10_000) <= 2_500, `${addr} got ${n} of 30000 keys`);
  });

  test('removing one of 4 targets moves only the keys it owned', () => {
    const before = mapping(new ConsistentHash(addresses.map((x) => target(x))));
    const removed = addresses[2]!;
    const after = mapping(new ConsistentHash(addresses.filter((x) => x !== removed).map((x) => target(x))));
    let moved = 0;
    for (const k of keys) {
      if (before.get(k) === removed) {
        assert.notEqual(after.get(k), removed);
        moved++;
      } else {
        assert.equal(after.get(k), before.get(k), `key ${k} moved off a target that stayed`);
      }
    }
    assert.ok(moved > 0 && moved < keys.length / 2, `moved ${moved}`);
  });

  test('an unusable owner passes its keys clockwise without moving the others', () => {
    const ts = addresses.map((x) => target(x));
    const b = new ConsistentHash(ts);
    const before = mapping(b);
    ts[1]!.healthy = false;
    const after = mapping(b);
    for (const k of keys) {
      if (before.get(k) === addresses[1]) assert.notEqual(after.get(k), addresses[1]);
      else assert.equal(after.get(k), before.get(k));
    }
  });

  test('weights scale a target share', () => {
    const b = new ConsistentHash([target('10.0.0.1:80', 3), target('10.0.0.2:80', 1)]);
    const c = counts([...mapping(b).values()]);
    const share = c['10.0.0.1:80']! / keys.length;
    assert.ok(share > 0.65 && share < 0.85, `heavy share ${share}`);
  });

  test('no key: falls back to round robin', () => {
    const b = new ConsistentHash([target('a'), target('b')]);
    assert.deepEqual(picks(b, 4), ['a', 'b', 'a', 'b']);
  });

  test('hash32 is deterministic and 32-bit', () => {
    assert.equal(hash32('abc'), hash32('abc'));
    assert.notEqual(hash32('abc'), hash32('abd'));
    for (const k of keys.slice(0, 100)) {
      const h = hash32(k);
      assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff);
    }
  });
});

describe('every balancer skips unusable targets', () => {
  const kinds = ['round_robin', 'weighted_round_robin', 'least_connections', 'consistent_hash'] as const;

  for (const kind of kinds) {
    test(`${kind}: unhealthy, ejected and excluded targets are never picked; none left gives null`, () => {
      const ts = [target('a'), target('b'), target('c'), target('d')];
      const b = createBalancer(kind, ts);
      ts[0]!.healthy = false;
      ts[1]!.ejectedUntil = NOW + 5000;
      const exclude = new Set([ts[2]!]);
      for (let i = 0; i < 50; i++) assert.equal(b.pick(`k${i}`, NOW, exclude)?.address, 'd');
      // Ejection ends at its time.
      const seen = new Set<string>();
      for (let i = 0; i < 200; i++) seen.add(b.pick(`k${i}`, NOW + 5000, exclude)!.address);
      assert.deepEqual([...seen].sort(), ['b', 'd']);
      exclude.add(ts[3]!);
      assert.equal(b.pick('k', NOW, exclude), null);
      for (const t of ts) t.healthy = false;
      assert.equal(b.pick('k', NOW, null), null);
    });
  }

  test('createBalancer makes the configured kind', () => {
    assert.ok(createBalancer('round_robin', []) instanceof RoundRobin);
    assert.ok(createBalancer('weighted_round_robin', []) instanceof SmoothWeighted);
    assert.ok(createBalancer('least_connections', []) instanceof LeastConnections);
    assert.ok(createBalancer('consistent_hash', []) instanceof ConsistentHash);
    for (const kind of kinds) assert.equal(createBalancer<T>(kind, []).pick('k', NOW, null), null);
  });
});
