// The stream states of RFC 9113 §5.1 (server side): every transition, and each refusal with its error code
// and scope (stream error or connection error).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DATA,
  HEADERS,
  Http2Error,
  PRIORITY,
  PROTOCOL_ERROR,
  RST_STREAM,
  STREAM_CLOSED,
  WINDOW_UPDATE,
} from '../../protocols/http2/frames.ts';
import {
  CLOSED,
  HALF_CLOSED_LOCAL,
  HALF_CLOSED_REMOTE,
  IDLE,
  OPEN,
  onReceive,
  onSend,
} from '../../protocols/http2/stream-state.ts';

test('a request with a body, then the response: idle -> open -> half-closed (remote) -> closed', () => {
  let s = onReceive(IDLE, HEADERS, false, 1);
  assert.equal(s, OPEN);
  s = onReceive(s, DATA, false, 1);
  assert.equal(s, OPEN);
  s = onReceive(s, DATA, true, 1);
  assert.equal(s, HALF_CLOSED_REMOTE);
  s = onSend(s, HEADERS, false);
  assert.equal(onSend(s, DATA, true), CLOSED);
});

test('a GET (END_STREAM on HEADERS), the response answered before the request ended, and trailers', () => {
  assert.equal(onReceive(IDLE, HEADERS, true, 1), HALF_CLOSED_REMOTE);
  const early = onSend(OPEN, DATA, true);
  assert.equal(early, HALF_CLOSED_LOCAL);
  assert.equal(onReceive(early, DATA, false, 3), HALF_CLOSED_LOCAL);
  assert.equal(onReceive(early, HEADERS, true, 3), CLOSED); // trailers end it
});

test('RST_STREAM closes from any open state, sent or received', () => {
  for (const s of [OPEN, HALF_CLOSED_LOCAL, HALF_CLOSED_REMOTE]) {
    assert.equal(onReceive(s, RST_STREAM, false, 1), CLOSED);
    assert.equal(onSend(s, RST_STREAM, false), CLOSED);
  }
});

const refusals: [string, () => number, number, number][] = [
  ['DATA on an idle stream: connection error', () => onReceive(IDLE, DATA, false, 5), PROTOCOL_ERROR, 0],
  [
    'RST_STREAM on an idle stream: connection error',
    () => onReceive(IDLE, RST_STREAM, false, 5),
    PROTOCOL_ERROR,
    0,
  ],
  [
    'WINDOW_UPDATE on an idle stream: connection error',
    () => onReceive(IDLE, WINDOW_UPDATE, false, 5),
    PROTOCOL_ERROR,
    0,
  ],
  [
    'DATA after END_STREAM: stream error STREAM_CLOSED',
    () => onReceive(HALF_CLOSED_REMOTE, DATA, false, 7),
    STREAM_CLOSED,
    7,
  ],
  [
    'HEADERS after END_STREAM: stream error STREAM_CLOSED',
    () => onReceive(HALF_CLOSED_REMOTE, HEADERS, true, 7),
    STREAM_CLOSED,
    7,
  ],
  [
    'DATA on a stream closed normally: STREAM_CLOSED',
    () => onReceive(CLOSED, DATA, false, 9),
    STREAM_CLOSED,
    9,
  ],
];
for (const [what, run, code, stream] of refusals) {
  test(what, () => {
    assert.throws(
      run,
      (err: Http2Error) => err instanceof Http2Error && err.code === code && err.stream === stream,
    );
  });
}

test('on a closed stream: PRIORITY, WINDOW_UPDATE and RST_STREAM are fine; frames in flight after our reset are ignored', () => {
  for (const type of [PRIORITY, WINDOW_UPDATE, RST_STREAM])
    assert.equal(onReceive(CLOSED, type, false, 1), CLOSED);
  assert.equal(onReceive(CLOSED, DATA, true, 1, true), CLOSED);
  assert.equal(onReceive(IDLE, PRIORITY, false, 1), IDLE);
  assert.throws(() => onSend(CLOSED, DATA, true), /END_STREAM sent/);
});
