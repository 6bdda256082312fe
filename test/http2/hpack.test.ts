// HPACK against RFC 7541 Appendix C (every example, with the dynamic table's contents and size after each
// block), the Huffman code against the appendix's codes, and the decoder's refusals: malformed integers,
// strings, indexes, size updates, Huffman padding, and header lists past their limit.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HeaderListTooLarge, HpackDecoder, HpackEncoder, HpackError } from '../../protocols/http2/hpack.ts';
import { BITS, CODES, huffmanDecode, huffmanEncode, huffmanLength } from '../../protocols/http2/huffman.ts';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const pairs = (fields: { name: string; value: string }[]) => fields.map((f) => [f.name, f.value]);

describe('Huffman code (Appendix B)', () => {
  test('codes derived from the lengths match the appendix', () => {
    const spot: [number, number, number][] = [
      [0, 0x1ff8, 13],
      [10, 0x3ffffffc, 30],
      [32, 0x14, 6],
      [48, 0x0, 5],
      [65, 0x21, 6],
      [92, 0x7fff0, 19],
      [127, 0xffffffc, 28],
      [200, 0x3ffffe2, 26],
      [255, 0x3ffffee, 26],
      [256, 0x3fffffff, 30],
    ];
    for (const [sym, code, bits] of spot)
      assert.deepEqual([CODES[sym], BITS[sym]], [code, bits], `symbol ${sym}`);
  });

  test('every byte value round-trips, alone and in runs', () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    for (const input of [all, Buffer.concat([all, all.reverse()]), Buffer.alloc(0), Buffer.from('a')]) {
      const enc = Buffer.alloc(huffmanLength(input, 0, input.length));
      const n = huffmanEncode(input, 0, input.length, enc, 0);
      assert.equal(n, enc.length);
      const dec = Buffer.alloc(Math.ceil((n * 8) / 5));
      assert.deepEqual(dec.subarray(0, huffmanDecode(enc, 0, n, dec, 0)), input);
    }
  });

  test('padding of 8 bits or more, padding with a 0 bit, and EOS are refused', () => {
    const out = Buffer.alloc(64);
    // 'a' is 00011 (5 bits): padded with 111 it is one byte; a second 0xff adds 8 bits of padding.
    assert.equal(huffmanDecode(Buffer.from([0x1f]), 0, 1, out, 0), 1);
    assert.throws(() => huffmanDecode(Buffer.from([0x1f, 0xff]), 0, 2, out, 0), /padding/);
    assert.throws(() => huffmanDecode(Buffer.from([0x18]), 0, 1, out, 0), /padding/); // 00011 000
    assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, out, 0), /EOS/);
  });
});

/** Decodes `blocks` in order with one decoder; checks each list and the table size after it. */
function decodeSequence(tableSize: number, steps: [string, string[][], number][]): void {
  const decoder = new HpackDecoder({ maxTableSize: tableSize });
  for (const [block, want, size] of steps) {
    assert.deepEqual(pairs(decoder.decode(hex(block))), want);
    assert.equal(decoder.tableSize, size);
  }
}

const REQ1 = [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/'],
  [':authority', 'www.example.com'],
];
const REQ2 = [...REQ1, ['cache-control', 'no-cache']];
const REQ3 = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':path', '/index.html'],
  [':authority', 'www.example.com'],
  ['custom-key', 'custom-value'],
];
const RES1 = [
  [':status', '302'],
  ['cache-control', 'private'],
  ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
  ['location', 'https://www.example.com'],
];
const RES2 = [[':status', '307'], ...RES1.slice(1)];
const RES3 = [
  [':status', '200'],
  ['cache-control', 'private'],
  ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
  ['location', 'https://www.example.com'],
  ['content-encoding', 'gzip'],
  ['set-cookie', 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1'],
];

describe('Appendix C', () => {
  test('C.2: literal with indexing, without indexing, never indexed, indexed', () => {
    const d = new HpackDecoder();
    assert.deepEqual(
      pairs(d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'))),
      [['custom-key', 'custom-header']],
    );
    assert.equal(d.tableSize, 55);
    assert.deepEqual(pairs(d.decode(hex('040c 2f73 616d 706c 652f 7061 7468'))), [[':path', '/sample/path']]);
    const never = d.decode(hex('1008 7061 7373 776f 7264 0673 6563 7265 74'));
    assert.deepEqual([never[0]!.name, never[0]!.value, never[0]!.sensitive], ['password', 'secret', true]);
    assert.deepEqual(pairs(d.decode(hex('82'))), [[':method', 'GET']]);
    assert.equal(d.tableSize, 55);
  });

  test('C.3: requests without Huffman', () => {
    decodeSequence(4096, [
      ['8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', REQ1, 57],
      ['8286 84be 5808 6e6f 2d63 6163 6865', REQ2, 110],
      ['8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65', REQ3, 164],
    ]);
  });

  test('C.4: requests with Huffman', () => {
    decodeSequence(4096, [
      ['8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', REQ1, 57],
      ['8286 84be 5886 a8eb 1064 9cbf', REQ2, 110],
      ['8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf', REQ3, 164],
    ]);
  });

  test('C.5: responses without Huffman, a 256-byte table evicting', () => {
    decodeSequence(256, [
      [
        '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
        RES1,
        222,
      ],
      ['4803 3330 37c1 c0bf', RES2, 222],
      [
        '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31',
        RES3,
        215,
      ],
    ]);
  });

  test('C.6: responses with Huffman, a 256-byte table evicting', () => {
    decodeSequence(256, [
      [
        '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
        RES1,
        222,
      ],
      ['4883 640e ffc1 c0bf', RES2, 222],
      [
        '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
        RES3,
        215,
      ],
    ]);
  });

  test('the encoder reproduces C.4 and C.6 byte for byte (same indexing choices as the RFC)', () => {
    const e = new HpackEncoder({ sensitive: [] });
    assert.equal(
      e.encode(REQ1 as [string, string][]).toString('hex'),
      hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff').toString('hex'),
    );
    assert.equal(
      e.encode(REQ2 as [string, string][]).toString('hex'),
      hex('8286 84be 5886 a8eb 1064 9cbf').toString('hex'),
    );
    assert.equal(
      e.encode(REQ3 as [string, string][]).toString('hex'),
      hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf').toString('hex'),
    );
    const r = new HpackEncoder({ sensitive: [] });
    r.setMaxTableSize(256);
    const first = r.encode(RES1 as [string, string][]);
    // The first block after the size change starts with the update (3f e1 01 = 256); the RFC's omits it.
    assert.equal(first.subarray(0, 3).toString('hex'), '3fe101');
    assert.equal(
      first.subarray(3).toString('hex'),
      hex(
        '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3',
      ).toString('hex'),
    );
    assert.equal(r.encode(RES2 as [string, string][]).toString('hex'), '4883640effc1c0bf');
  });
});

describe('the encoder and decoder together', () => {
  test('sensitive fields go never-indexed and arrive marked; tables stay in step over many blocks', () => {
    const e = new HpackEncoder();
    const d = new HpackDecoder();
    for (let i = 0; i < 200; i++) {
      const fields: [string, string][] = [
        [':method', i % 2 === 0 ? 'GET' : 'POST'],
        [':path', `/item/${i % 7}`],
        ['authorization', `Bearer t${i % 3}`],
        ['x-request-id', `id-${i}`],
        ['user-agent', 'netloom-test'],
        ['cookie', 'a=1'],
      ];
      const got = d.decode(e.encode(fields));
      assert.deepEqual(pairs(got), fields);
      assert.deepEqual(
        got.filter((f) => f.sensitive).map((f) => f.name),
        ['authorization', 'cookie'],
      );
    }
  });

  test('a table shrunk to 0 and grown again: the encoder signals both sizes, the decoder follows', () => {
    const e = new HpackEncoder();
    const d = new HpackDecoder();
    d.decode(e.encode([['x-a', '1']]));
    e.setMaxTableSize(0);
    e.setMaxTableSize(1024);
    const block = e.encode([['x-b', '2']]);
    assert.equal(block.subarray(0, 1).toString('hex'), '20'); // size 0 first
    assert.deepEqual(pairs(d.decode(block)), [['x-b', '2']]);
    assert.equal(d.tableSize, 36);
  });
});

describe('the decoder refuses malformed blocks', () => {
  const refused: [string, string, RegExp][] = [
    ['80', 'index 0', /index 0/],
    ['be', 'an index past the dynamic table', /beyond the tables/],
    ['ff80 8080 8080 01', 'an integer over 2^31', /above 2\^31/],
    ['ff80', 'an integer cut short', /cut short/],
    ['400a 6375 7374', 'a string longer than the block', /longer than its block/],
    ['40', 'a literal without its name', /missing/],
    ['3fe2 1f', 'a size update above the advertised 4096', /above the 4096/],
    ['823f e11f', 'a size update after a field', /after a field/],
    ['4081 ff00', 'a Huffman string of EOS', /EOS|padding/],
  ];
  for (const [block, what, message] of refused) {
    test(what, () => {
      assert.throws(
        () => new HpackDecoder().decode(hex(block)),
        (err: Error) => err instanceof HpackError && message.test(err.message),
      );
    });
  }

  test('a header list past maxHeaderListSize stops decoding (HeaderListTooLarge)', () => {
    const e = new HpackEncoder();
    const block = e.encode(
      Array.from({ length: 100 }, (_, i) => [`x-h${i}`, 'v'.repeat(100)] as [string, string]),
    );
    assert.throws(() => new HpackDecoder({ maxHeaderListSize: 4096 }).decode(block), HeaderListTooLarge);
    // One string bigger than the whole list allowance is refused before it is decoded.
    const big = new HpackEncoder().encode([['x-big', 'y'.repeat(100_000)]]);
    assert.throws(() => new HpackDecoder({ maxHeaderListSize: 4096 }).decode(big), HeaderListTooLarge);
  });
});
