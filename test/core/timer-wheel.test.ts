// The timing wheel driven by hand: every node fires once, never early, and at most one tick late.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TimerWheel, type WheelNode } from '../../core/timer-wheel.ts';
import { prng } from '../helpers.ts';

type Node = WheelNode & { id: number; firedAt: number; fires: number };
const node = (id: number): Node => ({
  id,
  firedAt: -1,
  fires: 0,
  wheelAt: 0,
  wheelPrev: null,
  wheelNext: null,
  wheelSlot: -1,
});

test('nodes fire once, never early, within one resolution of their time', () => {
  const resolution = 10;
  const wheel = new TimerWheel<Node>(resolution, (n, now) => {
    n.firedAt = now;
    n.fires++;
  });
  const rand = prng(11);
  const start = Date.now();
  const nodes: Node[] = [];
  for (let i = 0; i < 2000; i++) {
    const n = node(i);
    // Times within and far beyond one revolution (512 slots), some re-armed, some cancelled.
    wheel.schedule(n, start + 1 + Math.floor(rand() * 12_000));
    if (i % 7 === 0) wheel.schedule(n, start + 1 + Math.floor(rand() * 3000));
    nodes.push(n);
  }
  const cancelled = new Set(nodes.filter((n) => n.id % 11 === 0));
  for (const n of cancelled) wheel.cancel(n);
  // Advance at irregular steps, often landing mid-tick.
  for (let t = start; t <= start + 13_000; t += 1 + Math.floor(rand() * 9)) wheel.advance(t);
  wheel.dispose();
  for (const n of nodes) {
    if (cancelled.has(n)) {
      assert.equal(n.fires, 0, `cancelled node ${n.id} fired`);
      continue;
    }
    assert.equal(n.fires, 1, `node ${n.id} fired ${n.fires} times`);
    assert.ok(n.firedAt >= n.wheelAt, `node ${n.id} fired early`);
    assert.ok(n.firedAt - n.wheelAt < resolution + 9, `node ${n.id} fired ${n.firedAt - n.wheelAt} ms late`);
    assert.equal(n.wheelSlot, -1);
  }
});

test('a node already due fires on the next advance', () => {
  const fired: number[] = [];
  const wheel = new TimerWheel<Node>(25, (n) => fired.push(n.id));
  const now = Date.now();
  wheel.schedule(node(1), now - 1000);
  wheel.advance(now + 25);
  wheel.dispose();
  assert.deepEqual(fired, [1]);
});
