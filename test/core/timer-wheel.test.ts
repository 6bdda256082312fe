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

/** Resolves once `n` has fired, with the time it fired at. */
function fired(n: Node, ms = 3000): Promise<number> {
  return new Promise((resolve, reject) => {
    const until = Date.now() + ms;
    const poll = setInterval(() => {
      if (n.fires > 0) {
        clearInterval(poll);
        resolve(n.firedAt);
      } else if (Date.now() > until) {
        clearInterval(poll);
        reject(new Error(`node ${n.id} never fired`));
      }
    }, 1);
  });
}

test('driven by its own interval: it stops when empty and resyncs on restart, firing on time', async () => {
  const resolution = 2;
  const wheel = new TimerWheel<Node>(resolution, (n, now) => {
    n.firedAt = now;
    n.fires++;
  });
  const first = node(1);
  wheel.schedule(first, Date.now() + 10);
  assert.equal(wheel.running, true);
  await fired(first);
  await new Promise((r) => setTimeout(r, 3 * resolution));
  assert.equal(wheel.running, false, 'no interval runs while nothing is armed');
  // Idle for more than a revolution (512 slots): the restarted wheel must not walk stale slots late.
  await new Promise((r) => setTimeout(r, 512 * resolution + 100));
  const second = node(2);
  const due = Date.now() + 20;
  wheel.schedule(second, due);
  assert.equal(wheel.running, true, 'scheduling restarts the interval');
  const at = await fired(second);
  assert.ok(at >= due, `fired ${due - at} ms early`);
  assert.ok(at - due < 4 * resolution + 20, `fired ${at - due} ms late`);
  wheel.dispose();
});

test('after dispose, a new schedule restarts the wheel and earlier armed nodes fire too', async () => {
  const wheel = new TimerWheel<Node>(2, (n, now) => {
    n.firedAt = now;
    n.fires++;
  });
  const a = node(1);
  const b = node(2);
  wheel.schedule(a, Date.now() + 10);
  wheel.dispose();
  assert.equal(wheel.running, false);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(a.fires, 0, 'a disposed wheel fires nothing');
  wheel.schedule(b, Date.now() + 10);
  assert.equal(wheel.running, true, 'a schedule after dispose restarts the interval');
  await fired(b);
  await fired(a);
  assert.equal(a.fires, 1);
  assert.equal(b.fires, 1);
  wheel.dispose();
});
