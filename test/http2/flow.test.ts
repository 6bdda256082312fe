// HTTP/2 flow-control windows (RFC 9113 §5.2, §6.9): updates, their limits and scopes, a shrinking
// SETTINGS_INITIAL_WINDOW_SIZE, DATA past the window, and when receive credit is given back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlowWindow } from '../../protocols/http2/flow.ts';
import { FLOW_CONTROL_ERROR, type Http2Error, PROTOCOL_ERROR } from '../../protocols/http2/frames.ts';

const fails = (fn: () => void, code: number, stream: number) =>
  assert.throws(fn, (err: Http2Error) => err.code === code && err.stream === stream);

test('WINDOW_UPDATE: 0 is PROTOCOL_ERROR, past 2^31-1 FLOW_CONTROL_ERROR, scoped to the stream or the connection', () => {
  fails(() => new FlowWindow(3, 65_535, 65_535).onWindowUpdate(0), PROTOCOL_ERROR, 3);
  fails(() => new FlowWindow(0, 65_535, 65_535).onWindowUpdate(0), PROTOCOL_ERROR, 0);
  const w = new FlowWindow(5, 65_535, 65_535);
  w.onWindowUpdate(2 ** 31 - 1 - 65_535);
  assert.equal(w.send, 2 ** 31 - 1);
  fails(() => w.onWindowUpdate(1), FLOW_CONTROL_ERROR, 5);
  fails(() => new FlowWindow(0, 2 ** 31 - 1, 65_535).onWindowUpdate(1), FLOW_CONTROL_ERROR, 0);
});

test('a smaller SETTINGS_INITIAL_WINDOW_SIZE can make a send window negative; a larger one past 2^31-1 is a connection error', () => {
  const w = new FlowWindow(1, 65_535, 65_535);
  w.sent(60_000);
  w.onInitialWindowChange(-65_535 + 1000);
  assert.equal(w.send, 5535 - 64_535);
  w.onWindowUpdate(100_000);
  assert.ok(w.send > 0);
  fails(() => new FlowWindow(1, 2 ** 31 - 2, 0).onInitialWindowChange(2), FLOW_CONTROL_ERROR, 0);
});

test('DATA beyond the receive window is FLOW_CONTROL_ERROR; credit goes back in updates of half the window', () => {
  const w = new FlowWindow(7, 65_535, 16_384);
  w.onData(10_000);
  assert.equal(w.consume(4_000), 0, 'under half the window: nothing yet');
  assert.equal(w.consume(4_192), 8_192);
  assert.equal(w.receive, 16_384 - 10_000 + 8_192);
  fails(() => w.onData(w.receive + 1), FLOW_CONTROL_ERROR, 7);
});
