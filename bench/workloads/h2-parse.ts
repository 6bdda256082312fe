// h2-parse: tinybench microbenchmark of the HTTP/2 codec's pieces: HPACK decoding of a browser-like request
// header block (a first request on a connection, mostly literals, and a repeat, mostly dynamic-table
// references), HPACK encoding of a typical response head, and reading and checking frame headers. No peer:
// Node exposes nghttp2's HPACK to no JavaScript; the figures are for A/B runs of our own code.
import { checkFrame, type FrameHeader, HpackDecoder, HpackEncoder, readFrameHeader } from 'netloom/http2';
import { Bench } from 'tinybench';
import { writeResult } from '../harness.ts';

const REQUEST: [string, string][] = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':authority', 'api.example.com'],
  [':path', '/api/v1/user/42?expand=profile&lang=en'],
  ['sec-ch-ua', '"Chromium";v="124", "Not-A.Brand";v="99"'],
  ['sec-ch-ua-mobile', '?0'],
  [
    'user-agent',
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36',
  ],
  ['accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8'],
  ['sec-fetch-site', 'none'],
  ['accept-encoding', 'gzip, deflate, br'],
  ['accept-language', 'en-US,en;q=0.9'],
  ['cookie', 'session=0123456789abcdef; theme=dark'],
];

const encoder = new HpackEncoder({ sensitive: [] });
const first = Buffer.from(encoder.encode(REQUEST));
const repeat = Buffer.from(encoder.encode(REQUEST));
let sink = 0;

// A decoder that has seen the first block decodes the repeat as the server does on a keep-alive connection.
const warm = new HpackDecoder();
warm.decode(first);

const responseEncoder = new HpackEncoder();
const frames = Buffer.alloc(9 * 64);
for (let i = 0; i < 64; i++) {
  frames.writeUIntBE(1000 + i, i * 9, 3); // DATA frames of 1000 + i octets on odd streams
  frames.writeUInt32BE(1 + 2 * i, i * 9 + 5);
}
const header: FrameHeader = { length: 0, type: 0, flags: 0, stream: 0 };

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  const bench = new Bench({ time: Math.max(500, (args.seconds * 1000) / 4), warmupTime: 200 });
  bench
    .add('HPACK decode, first request (12 fields)', () => {
      sink += new HpackDecoder().decode(first).length;
    })
    .add('HPACK decode, repeated request', () => {
      sink += warm.decode(repeat).length;
    })
    .add('HPACK encode, response head (4 fields)', () => {
      responseEncoder.begin();
      responseEncoder.add(':status', '200');
      responseEncoder.add('content-type', 'application/json');
      responseEncoder.add('date', 'Tue, 01 Dec 2026 15:00:00 GMT');
      responseEncoder.add('content-length', '27');
      sink += responseEncoder.finish().length;
    })
    .add('frame headers read and checked (64)', () => {
      for (let p = 0; p < frames.length; p += 9) {
        readFrameHeader(frames, p, header);
        checkFrame(header, 16_384);
        sink += header.length;
      }
    });
  await bench.run();
  const results: Record<string, number> = {};
  const lines = ['', 'h2-parse (tinybench, ns per operation, median of samples; lower is better)'];
  for (const task of bench.tasks) {
    const r = task.result as { latency?: { p50?: number }; period?: number } | undefined;
    const ns = ((r?.latency?.p50 ?? r?.period ?? Number.NaN) as number) * 1e6;
    results[task.name] = ns;
    lines.push(`${task.name.padEnd(44)}${ns.toFixed(0).padStart(10)}`);
  }
  lines.push(`blocks: first request ${first.length} octets, repeat ${repeat.length} octets`);
  console.log(lines.join('\n'));
  if (sink === -1) console.log(sink);
  writeResult('h2-parse', { results, firstBlock: first.length, repeatBlock: repeat.length });
}
