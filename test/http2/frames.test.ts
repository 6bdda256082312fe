// HTTP/2 frame headers and SETTINGS (RFC 9113 §4, §6): reading and writing headers, the per-type checks made
// before a payload is read (each with the error code and connection/stream scope the RFC gives), and the
// bounds of SETTINGS values.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as f from '../../protocols/http2/frames.ts';

function header(length: number, type: number, flags: number, stream: number): f.FrameHeader {
  const buf = Buffer.alloc(9);
  f.writeFrameHeader(buf, 0, length, type, flags, stream);
  return f.readFrameHeader(buf, 0, { length: 0, type: 0, flags: 0, stream: 0 });
}

describe('frame headers', () => {
  test('round trip, the largest length and stream id, the reserved bit ignored', () => {
    assert.deepEqual(header(16_777_215, f.DATA, 0xff, 2 ** 31 - 1), {
      length: 16_777_215,
      type: 0,
      flags: 0xff,
      stream: 2 ** 31 - 1,
    });
    const raw = Buffer.from('000004080000000001', 'hex');
    raw[5]! |= 0x80; // reserved bit set
    assert.equal(f.readFrameHeader(raw, 0, { length: 0, type: 0, flags: 0, stream: 0 }).stream, 1);
  });
});

describe('checks before the payload', () => {
  const cases: [string, f.FrameHeader, number, number][] = [
    [
      'DATA over the frame size, on a stream: stream error',
      header(16_385, f.DATA, 0, 1),
      f.FRAME_SIZE_ERROR,
      1,
    ],
    [
      'HEADERS over the frame size: connection error (it changes HPACK state)',
      header(16_385, f.HEADERS, 0, 1),
      f.FRAME_SIZE_ERROR,
      0,
    ],
    ['DATA on stream 0', header(1, f.DATA, 0, 0), f.PROTOCOL_ERROR, 0],
    ['HEADERS on stream 0', header(1, f.HEADERS, 0, 0), f.PROTOCOL_ERROR, 0],
    ['PRIORITY of 4 octets', header(4, f.PRIORITY, 0, 3), f.FRAME_SIZE_ERROR, 3],
    ['RST_STREAM on stream 0', header(4, f.RST_STREAM, 0, 0), f.PROTOCOL_ERROR, 0],
    ['RST_STREAM of 3 octets', header(3, f.RST_STREAM, 0, 1), f.FRAME_SIZE_ERROR, 0],
    ['SETTINGS on a stream', header(0, f.SETTINGS, 0, 1), f.PROTOCOL_ERROR, 0],
    ['SETTINGS ack with a payload', header(6, f.SETTINGS, f.ACK, 0), f.FRAME_SIZE_ERROR, 0],
    ['SETTINGS of 7 octets', header(7, f.SETTINGS, 0, 0), f.FRAME_SIZE_ERROR, 0],
    ['PUSH_PROMISE from a client', header(4, f.PUSH_PROMISE, 0, 1), f.PROTOCOL_ERROR, 0],
    ['PING on a stream', header(8, f.PING, 0, 1), f.PROTOCOL_ERROR, 0],
    ['PING of 7 octets', header(7, f.PING, 0, 0), f.FRAME_SIZE_ERROR, 0],
    ['GOAWAY of 7 octets', header(7, f.GOAWAY, 0, 0), f.FRAME_SIZE_ERROR, 0],
    ['WINDOW_UPDATE of 5 octets', header(5, f.WINDOW_UPDATE, 0, 1), f.FRAME_SIZE_ERROR, 0],
  ];
  for (const [what, h, code, stream] of cases) {
    test(what, () => {
      assert.throws(
        () => f.checkFrame(h, f.MIN_MAX_FRAME_SIZE),
        (err: f.Http2Error) => err instanceof f.Http2Error && err.code === code && err.stream === stream,
      );
    });
  }

  test('well-formed frames and unknown types pass', () => {
    for (const h of [
      header(16_384, f.DATA, 1, 1),
      header(5, f.PRIORITY, 0, 1),
      header(0, f.SETTINGS, f.ACK, 0),
      header(12, f.SETTINGS, 0, 0),
      header(8, f.PING, 0, 0),
      header(10, f.GOAWAY, 0, 0),
      header(4, f.WINDOW_UPDATE, 0, 0),
      header(3, 0xfa, 0xff, 9),
    ]) {
      assert.doesNotThrow(() => f.checkFrame(h, f.MIN_MAX_FRAME_SIZE), f.typeName(h.type));
    }
  });
});

describe('SETTINGS values', () => {
  const payload = (pairs: [number, number][]) => f.settingsFrame(pairs).subarray(9);

  test('known parameters are applied, unknown ones ignored', () => {
    const s = f.defaultSettings();
    const p = payload([
      [f.SETTINGS_HEADER_TABLE_SIZE, 0],
      [f.SETTINGS_ENABLE_PUSH, 0],
      [f.SETTINGS_MAX_CONCURRENT_STREAMS, 100],
      [f.SETTINGS_INITIAL_WINDOW_SIZE, 2 ** 31 - 1],
      [f.SETTINGS_MAX_FRAME_SIZE, 16_777_215],
      [f.SETTINGS_MAX_HEADER_LIST_SIZE, 8192],
      [0x99, 7],
    ]);
    f.applySettings(p, 0, p.length, s);
    assert.deepEqual(s, {
      headerTableSize: 0,
      enablePush: false,
      maxConcurrentStreams: 100,
      initialWindowSize: 2 ** 31 - 1,
      maxFrameSize: 16_777_215,
      maxHeaderListSize: 8192,
    });
  });

  const bad: [string, [number, number], number][] = [
    ['ENABLE_PUSH of 2', [f.SETTINGS_ENABLE_PUSH, 2], f.PROTOCOL_ERROR],
    ['INITIAL_WINDOW_SIZE of 2^31', [f.SETTINGS_INITIAL_WINDOW_SIZE, 2 ** 31], f.FLOW_CONTROL_ERROR],
    ['MAX_FRAME_SIZE of 16383', [f.SETTINGS_MAX_FRAME_SIZE, 16_383], f.PROTOCOL_ERROR],
    ['MAX_FRAME_SIZE of 2^24', [f.SETTINGS_MAX_FRAME_SIZE, 2 ** 24], f.PROTOCOL_ERROR],
  ];
  for (const [what, pair, code] of bad) {
    test(`${what} is refused`, () => {
      const p = payload([pair]);
      assert.throws(
        () => f.applySettings(p, 0, p.length, f.defaultSettings()),
        (err: f.Http2Error) => err.code === code && err.stream === 0,
      );
    });
  }

  test('GOAWAY, RST_STREAM and WINDOW_UPDATE frames as the RFC lays them out', () => {
    assert.equal(
      f.goawayFrame(7, f.PROTOCOL_ERROR, 'x').toString('hex'),
      '000009070000000000' + '00000007' + '00000001' + '78',
    );
    assert.equal(f.rstStreamFrame(3, f.CANCEL).toString('hex'), '000004030000000003' + '00000008');
    assert.equal(f.windowUpdateFrame(0, 65_535).toString('hex'), '000004080000000000' + '0000ffff');
    assert.equal(f.PREFACE.toString('latin1'), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  });
});
