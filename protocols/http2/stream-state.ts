/**
 * The stream state machine of RFC 9113 §5.1, server side (no PUSH_PROMISE, so no reserved states): one
 * `state` and the transitions the frames sent and received cause, each refusal with the error the RFC names
 * and whether it is a stream error (RST_STREAM) or a connection error (GOAWAY).
 *
 *   idle --recv HEADERS--> open --recv END_STREAM--> half-closed (remote) --send END_STREAM--> closed
 *                           \--send END_STREAM--> half-closed (local) --recv END_STREAM--> closed
 *   any --send or recv RST_STREAM--> closed
 */
import {
  DATA,
  HEADERS,
  Http2Error,
  PRIORITY,
  PROTOCOL_ERROR,
  RST_STREAM,
  STREAM_CLOSED,
  WINDOW_UPDATE,
} from './frames.ts';

export const IDLE = 0;
export const OPEN = 1;
export const HALF_CLOSED_LOCAL = 2;
export const HALF_CLOSED_REMOTE = 3;
export const CLOSED = 4;

const NAMES = ['idle', 'open', 'half-closed (local)', 'half-closed (remote)', 'closed'];
export function stateName(state: number): string {
  return NAMES[state] ?? String(state);
}

/**
 * The state after receiving a frame of `type` (with END_STREAM if `endStream`) on a stream in `state`.
 * `closedByReset`: the stream was closed by a RST_STREAM we sent or received (frames in flight are then
 * tolerated as the RFC allows: the caller ignores them); otherwise frames on a closed stream are errors.
 * Throws {@link Http2Error} with the stream id `id` for a stream error, 0 for a connection error.
 */
export function onReceive(
  state: number,
  type: number,
  endStream: boolean,
  id: number,
  closedByReset = false,
): number {
  switch (state) {
    case IDLE:
      // §5.1: only HEADERS (and PRIORITY) may open a stream; anything else on an idle stream is a
      // connection error.
      if (type === HEADERS) return endStream ? HALF_CLOSED_REMOTE : OPEN;
      if (type === PRIORITY) return IDLE;
      throw new Http2Error(PROTOCOL_ERROR, `a ${frameName(type)} frame on idle stream ${id}`);
    case OPEN:
    case HALF_CLOSED_LOCAL:
      if (type === RST_STREAM) return CLOSED;
      if (type === DATA || type === HEADERS) {
        if (!endStream) return state;
        return state === OPEN ? HALF_CLOSED_REMOTE : CLOSED;
      }
      return state;
    case HALF_CLOSED_REMOTE:
      // §5.1: the peer said it was done; DATA or HEADERS now are a stream error STREAM_CLOSED.
      if (type === RST_STREAM) return CLOSED;
      if (type === DATA || type === HEADERS) {
        throw new Http2Error(
          STREAM_CLOSED,
          `a ${frameName(type)} frame after END_STREAM on stream ${id}`,
          id,
        );
      }
      return state;
    case CLOSED:
      if (type === PRIORITY || type === WINDOW_UPDATE || type === RST_STREAM) return CLOSED;
      if (closedByReset) return CLOSED; // in flight when we reset it: ignored (§5.1, "closed")
      // After a normal close, DATA or HEADERS are STREAM_CLOSED; a connection error the RFC allows too.
      throw new Http2Error(STREAM_CLOSED, `a ${frameName(type)} frame on closed stream ${id}`, id);
  }
  throw new Error(`unknown stream state ${state}`);
}

/** The state after sending a frame (HEADERS or DATA, with END_STREAM if `endStream`, or RST_STREAM). */
export function onSend(state: number, type: number, endStream: boolean): number {
  if (type === RST_STREAM) return CLOSED;
  if (!endStream) return state;
  if (state === OPEN) return HALF_CLOSED_LOCAL;
  if (state === HALF_CLOSED_REMOTE) return CLOSED;
  throw new Error(`END_STREAM sent on a stream that is ${stateName(state)}`);
}

function frameName(type: number): string {
  return ['DATA', 'HEADERS', 'PRIORITY', 'RST_STREAM'][type] ?? `type ${type}`;
}
