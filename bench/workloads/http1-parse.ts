// http1-parse: tinybench microbenchmark of our HTTP/1.1 request parser against llhttp (Node's own binding)
// on a small GET, a browser-like GET with 12 headers, and a chunked POST. Ours is measured twice: as the
// server uses it (strings made only when asked for: here method and target), and with every header name
// and value materialized as a string, which is what llhttp's binding hands to JavaScript.
import { createRequire } from 'node:module';
import { BODY_CHUNKED, BODY_LENGTH, BODY_NONE, BodyDecoder, HeadParser } from 'netloom/http1';
import { Bench } from 'tinybench';
import { writeResult } from '../harness.ts';

interface NodeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  execute(data: Buffer): unknown;
  [callback: number]: unknown;
}
type NodeParserClass = { new (): NodeParser } & Record<string, number>;

const INPUTS: Record<string, Buffer> = {
  'small GET': Buffer.from('GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\n\r\n'),
  'browser GET, 12 headers': Buffer.from(
    'GET /api/v1/user/42?expand=profile&lang=en HTTP/1.1\r\n' +
      'Host: api.example.com\r\n' +
      'Connection: keep-alive\r\n' +
      'Cache-Control: max-age=0\r\n' +
      'sec-ch-ua: "Chromium";v="124", "Not-A.Brand";v="99"\r\n' +
      'sec-ch-ua-mobile: ?0\r\n' +
      'Upgrade-Insecure-Requests: 1\r\n' +
      'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n' +
      'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n' +
      'Sec-Fetch-Site: none\r\n' +
      'Accept-Encoding: gzip, deflate, br\r\n' +
      'Accept-Language: en-US,en;q=0.9\r\n' +
      'Cookie: session=0123456789abcdef; theme=dark\r\n\r\n',
  ),
  'chunked POST': Buffer.from(
    'POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '1a\r\n{"name":"netloom","n":42}\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n',
  ),
};

const limits = { maxStartLine: 8192, maxHeaderBytes: 16384, maxHeaders: 100, requireHost: true };
const bodyLimits = { maxBodySize: 1 << 20, maxChunkLine: 4096, maxTrailerBytes: 16384, maxTrailers: 100 };
const head = new HeadParser('request', limits);
const body = new BodyDecoder(bodyLimits);
let sink = 0;
const bodySink = {
  onBody(_b: Buffer, s: number, e: number) {
    sink += e - s;
  },
};

function ours(input: Buffer, materialize: boolean): void {
  const n = head.parse(input, 0, input.length);
  if (n <= 0) throw new Error(`our parser failed: ${head.errorReason}`);
  sink += head.method.length + head.targetEnd - head.targetStart;
  if (materialize) {
    for (let k = 0; k < head.fieldCount; k++)
      sink += head.name(input, k).length + head.value(input, k).length;
  }
  const mode = head.chunked ? BODY_CHUNKED : head.contentLength > 0 ? BODY_LENGTH : BODY_NONE;
  body.begin(mode, head.contentLength);
  if (!body.done) body.decode(input, n, input.length, bodySink);
}

const require = createRequire(import.meta.url);
const HTTPParser = (require('node:_http_common') as { HTTPParser: NodeParserClass }).HTTPParser;
const llhttp = new HTTPParser();
llhttp[HTTPParser.kOnHeadersComplete!] = (
  _maj: number,
  _min: number,
  headers: string[],
  _m: number,
  url: string,
) => {
  sink += headers.length + url.length;
};
llhttp[HTTPParser.kOnBody!] = (b: Buffer) => {
  sink += b.length;
};
llhttp[HTTPParser.kOnMessageComplete!] = () => {
  sink++;
};
llhttp[HTTPParser.kOnHeaders!] = () => {};
llhttp[HTTPParser.kOnExecute!] = () => {};

function viaLlhttp(input: Buffer): void {
  llhttp.initialize(HTTPParser.REQUEST!, {}, 0, 0);
  const r = llhttp.execute(input);
  if (typeof r !== 'number') throw new Error('llhttp failed');
}

export async function run(args: { rounds: number; seconds: number }): Promise<void> {
  const results: Record<string, Record<string, number>> = {};
  const lines = ['', 'http1-parse (tinybench, ns per request, median of samples; lower is better)'];
  lines.push(
    `${'input'.padEnd(26)}${'ours'.padStart(10)}${'ours+strings'.padStart(14)}${'llhttp'.padStart(10)}${'llhttp/ours'.padStart(13)}${'llhttp/ours+s'.padStart(15)}`,
  );
  for (const [name, input] of Object.entries(INPUTS)) {
    const bench = new Bench({ time: Math.max(500, (args.seconds * 1000) / 3), warmupTime: 200 });
    bench
      .add('ours', () => ours(input, false))
      .add('ours+strings', () => ours(input, true))
      .add('llhttp', () => viaLlhttp(input));
    await bench.run();
    const ns: Record<string, number> = {};
    for (const task of bench.tasks) {
      const r = task.result as { latency?: { p50?: number }; period?: number } | undefined;
      ns[task.name] = ((r?.latency?.p50 ?? r?.period ?? Number.NaN) as number) * 1e6;
    }
    results[name] = ns;
    lines.push(
      `${name.padEnd(26)}${ns.ours!.toFixed(0).padStart(10)}${ns['ours+strings']!.toFixed(0).padStart(14)}${ns.llhttp!.toFixed(0).padStart(10)}${`${(ns.llhttp! / ns.ours!).toFixed(2)}x`.padStart(13)}${`${(ns.llhttp! / ns['ours+strings']!).toFixed(2)}x`.padStart(15)}`,
    );
  }
  console.log(lines.join('\n'));
  if (sink === -1) console.log(sink);
  writeResult('http1-parse', { results });
}
