// Differential fuzzing of netloom's HTTP/1.1 request parser against llhttp (the parser Node ships), shared by
// test/http1/differential-fuzz.test.ts (a bounded, seeded run) and bench/fuzz-http1.ts (long runs).
//
// Each input is a valid request from CORPUS with 1 to 4 seeded mutations (bytes inserted, deleted or
// replaced, especially CR, LF, SP, HT, NUL, ':', digits, hex, ';', '"'; header lines duplicated, swapped or
// dropped; Content-Length values changed; Transfer-Encoding, Content-Length, Connection and Upgrade headers
// added; chunk-size lines rewritten; framing fields put in trailers; request-targets of every form swapped in,
// often with CONNECT; messages truncated or pipelined). Both parsers run it; `compare` names the result:
//
// - `agree:*`       same outcome and the same messages;
// - `deliberate:*`  a difference we keep on purpose, each with its RFC reason in DELIBERATE (below);
// - `violation:*`   a bug: our parser threw, accepted a message llhttp refuses for a framing reason, parsed
//                   different messages (method, target, version, headers, body, trailers) from the same
//                   bytes, or differed in a way nobody classified. The fuzz test fails on any of these.
import { createRequire } from 'node:module';
import { prng } from '../helpers.ts';
import {
  CONTINUATIONS,
  type DriveResult,
  drive,
  type Field,
  type ParsedMessage,
  refusedWhateverFollows,
} from './server-driver.ts';

// ---- llhttp through Node's binding ----------------------------------------------------------------------

/** llhttp's method codes (llhttp.h `HTTP_METHOD_MAP` and the RTSP ones), index = code. */
export const LLHTTP_METHOD_CODES: readonly string[] = [
  'DELETE',
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'COPY',
  'LOCK',
  'MKCOL',
  'MOVE',
  'PROPFIND',
  'PROPPATCH',
  'SEARCH',
  'UNLOCK',
  'BIND',
  'REBIND',
  'UNBIND',
  'ACL',
  'REPORT',
  'MKACTIVITY',
  'CHECKOUT',
  'MERGE',
  'M-SEARCH',
  'NOTIFY',
  'SUBSCRIBE',
  'UNSUBSCRIBE',
  'PATCH',
  'PURGE',
  'MKCALENDAR',
  'LINK',
  'UNLINK',
  'SOURCE',
  'PRI',
  'DESCRIBE',
  'ANNOUNCE',
  'SETUP',
  'PLAY',
  'PAUSE',
  'TEARDOWN',
  'GET_PARAMETER',
  'SET_PARAMETER',
  'REDIRECT',
  'RECORD',
  'FLUSH',
  'QUERY',
];

/** The methods llhttp accepts on an HTTP/x.x request line (PRI only as the h2 preface). */
export const LLHTTP_HTTP_METHODS: ReadonlySet<string> = new Set([
  ...LLHTTP_METHOD_CODES.slice(0, 34),
  'QUERY',
]);

/** What Node's `HTTPParser` binding looks like, as far as this file uses it. */
interface NodeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  execute(data: Buffer): unknown;
  close(): void;
  [callback: number]: unknown;
}
interface NodeParserClass {
  new (): NodeParser;
  REQUEST: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
  kLenientNone?: number;
}

function loadHttpParser(): NodeParserClass {
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  // `_http_common` re-exports the binding (Node 12 to 24); `process.binding('http_parser')` is gone in Node 24.
  for (const name of ['node:_http_common', '_http_common']) {
    try {
      const mod: unknown = require(name);
      if (typeof mod === 'object' && mod !== null && 'HTTPParser' in mod) {
        const ctor: unknown = mod.HTTPParser;
        if (typeof ctor === 'function') {
          const c = ctor as unknown as Record<string, unknown>;
          const keys = ['REQUEST', 'kOnMessageBegin', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody'];
          if ([...keys, 'kOnMessageComplete', 'kOnExecute'].every((k) => typeof c[k] === 'number')) {
            return ctor as unknown as NodeParserClass;
          }
        }
      }
      tried.push(`${name}: no usable HTTPParser`);
    } catch (err) {
      tried.push(`${name}: ${String(err)}`);
    }
  }
  throw new Error(`cannot reach Node's llhttp binding (${tried.join('; ')})`);
}

export type ReferenceOutcome = 'success' | 'error' | 'incomplete' | 'upgrade' | 'closed' | 'h2-upgrade';

export interface ReferenceMessage extends ParsedMessage {
  upgrade: boolean;
  keepAlive: boolean;
}

export interface ReferenceResult {
  outcome: ReferenceOutcome;
  messages: ReferenceMessage[];
  error?: { code: string; reason: string; offset: number };
}

function pairs(flat: string[]): Field[] {
  const out: Field[] = [];
  for (let k = 0; k + 1 < flat.length; k += 2) out.push([flat[k]!, flat[k + 1]!]);
  return out;
}

/**
 * llhttp in strict mode (no lenient flags), as Node ships it, fed a whole input. One instance parses many
 * inputs (re-initialized for each).
 */
export class Llhttp {
  readonly version = process.versions.llhttp ?? 'unknown';
  private readonly parser: NodeParser;
  private readonly type: number;
  private messages: ReferenceMessage[] = [];
  private begun = 0;
  private upgraded = false;
  private headersDone = false;
  private headerAcc: string[] = [];
  private trailerAcc: string[] = [];
  private urlAcc = '';
  private bodyParts: Buffer[] = [];
  private current: ReferenceMessage | null = null;

  constructor() {
    const HTTPParser = loadHttpParser();
    this.type = HTTPParser.REQUEST;
    const p = new HTTPParser();
    p[HTTPParser.kOnMessageBegin] = () => {
      this.begun++;
      this.headersDone = false;
      this.headerAcc = [];
      this.trailerAcc = [];
      this.urlAcc = '';
      this.bodyParts = [];
      this.current = null;
    };
    // Called when more than 32 fields piled up (then headers-complete gets none) and for trailers.
    p[HTTPParser.kOnHeaders] = (headers: unknown, url: unknown) => {
      const list = Array.isArray(headers) ? (headers as string[]) : [];
      if (this.headersDone) this.trailerAcc.push(...list);
      else {
        this.headerAcc.push(...list);
        if (typeof url === 'string') this.urlAcc += url;
      }
    };
    p[HTTPParser.kOnHeadersComplete] = (
      major: number,
      minor: number,
      headers: unknown,
      method: number,
      url: unknown,
      _status: unknown,
      _statusText: unknown,
      upgrade: boolean,
      keepAlive: boolean,
    ) => {
      this.headersDone = true;
      if (Array.isArray(headers)) this.headerAcc.push(...(headers as string[]));
      if (typeof url === 'string') this.urlAcc += url;
      this.current = {
        method: LLHTTP_METHOD_CODES[method] ?? `#${method}`,
        target: this.urlAcc,
        versionMajor: major,
        versionMinor: minor,
        headers: pairs(this.headerAcc),
        body: Buffer.alloc(0),
        trailers: [],
        upgrade: upgrade === true,
        keepAlive: keepAlive === true,
      };
      return 0;
    };
    p[HTTPParser.kOnBody] = (b: Buffer, start?: number, len?: number) => {
      // Node 24 passes a view of the body bytes; older Nodes passed (buffer, start, length).
      const view = typeof start === 'number' && typeof len === 'number' ? b.subarray(start, start + len) : b;
      this.bodyParts.push(Buffer.from(view));
    };
    p[HTTPParser.kOnMessageComplete] = () => {
      const m = this.current;
      if (m === null) return;
      m.body = Buffer.concat(this.bodyParts);
      m.trailers = pairs(this.trailerAcc);
      this.messages.push(m);
      this.current = null;
      if (m.upgrade) this.upgraded = true;
    };
    p[HTTPParser.kOnExecute] = () => {};
    this.parser = p;
  }

  parse(input: Buffer): ReferenceResult {
    const r = this.execute(input);
    const unfinished = this.current;
    if (
      unfinished?.upgrade === true &&
      unfinished.method !== 'CONNECT' &&
      (r.outcome === 'incomplete' || r.error?.code === 'HPE_HIDDEN_BY_UPGRADE')
    ) {
      // Node's binding hides llhttp's errors once a request asked for an upgrade, and an error at the last
      // byte even looks like 'incomplete'. llhttp frames the body the same with or without the upgrade (it
      // only stops after it), so parse again with the Upgrade fields renamed to learn the real state.
      const plain = this.execute(
        Buffer.from(input.toString('latin1').replace(/\r\nupgrade:/gi, '\r\nupgrad_:'), 'latin1'),
      );
      if (plain.outcome === 'error') return { outcome: 'error', messages: r.messages, error: plain.error };
    }
    return r;
  }

  private execute(input: Buffer): ReferenceResult {
    this.messages = [];
    this.begun = 0;
    this.upgraded = false;
    this.current = null;
    this.parser.initialize(this.type, {}, 0, 0);
    const r = this.parser.execute(input);
    const messages = this.messages;
    if (r instanceof Error) {
      const e = r as Error & { code?: unknown; reason?: unknown; bytesParsed?: unknown };
      const code = typeof e.code === 'string' ? e.code : 'HPE_UNKNOWN';
      const error = {
        code,
        reason: typeof e.reason === 'string' ? e.reason : e.message,
        offset: typeof e.bytesParsed === 'number' ? e.bytesParsed : -1,
      };
      if (code === 'HPE_CLOSED_CONNECTION') return { outcome: 'closed', messages, error };
      if (code === 'HPE_PAUSED_H2_UPGRADE') return { outcome: 'h2-upgrade', messages, error };
      return { outcome: 'error', messages, error };
    }
    if (this.upgraded) return { outcome: 'upgrade', messages };
    if (typeof r === 'number' && r < input.length) {
      // Node's binding drops llhttp's error once a request asked for an upgrade (node_http_parser.cc:
      // `if (!parser_.upgrade && err != HPE_OK)`) and only returns how far it got.
      return {
        outcome: 'error',
        messages,
        error: {
          code: 'HPE_HIDDEN_BY_UPGRADE',
          reason: 'error in an upgrade request (Node hides it)',
          offset: r,
        },
      };
    }
    return { outcome: this.begun > messages.length ? 'incomplete' : 'success', messages };
  }

  close(): void {
    this.parser.close();
  }
}

// ---- corpus and mutations -------------------------------------------------------------------------------

/** Valid requests (latin1), the seeds of every mutated input. */
export const CORPUS: readonly string[] = [
  'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n',
  'GET /search?q=a%20b&lang=en HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz/1.0\r\nAccept: */*\r\n' +
    'Accept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n',
  'POST /submit HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/x-www-form-urlencoded\r\n' +
    'Content-Length: 11\r\n\r\nhello=world',
  'PUT /file HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\nline1\r\nline2',
  'POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
  'POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: Expires, X-Sum\r\n\r\n4;name=value\r\nWiki\r\n' +
    '5;q="a;b\\"c"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\nX-Sum: 42\r\n\r\n',
  'POST /empty HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  'GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n',
  'POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n' +
    '\r\n3\r\nxyz\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n',
  `GET /many HTTP/1.1\r\nHost: a\r\n${Array.from({ length: 40 }, (_, k) => `X-Header-${k}: value ${k}\r\n`).join('')}\r\n`,
  'GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /y HTTP/1.0\r\n\r\n',
  'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET http://example.com:8080/p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n',
  'GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85abcd',
  'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01',
  'CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n',
  'CONNECT 10.0.0.1:80 HTTP/1.0\r\n\r\n',
  'DELETE /item/7 HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n',
  'GET /bye HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
  '\r\nGET /after-crlf HTTP/1.1\r\nHost: a\r\n\r\n',
  'PATCH /obj HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"a":"b\\"c"}\n',
  'POST /mixed HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0;done\r\n\r\n' +
    'GET /next HTTP/1.1\r\nHost: a\r\n\r\n',
  'HEAD /h HTTP/1.1\r\nHost: a\r\nAccept: text/html;q=0.9, */*;q=0.1\r\nCookie: a=1; b="2"\r\n\r\n',
  'POST /z HTTP/1.1\r\nHost: a\r\nContent-Length: 0003\r\nConnection: x , upgrade\r\nUpgrade:\r\n\r\nabc',
];

const CR = 0x0d;
const LF = 0x0a;
/** Bytes that matter to HTTP/1.1 syntax, inserted and substituted more often than random ones. */
const INTERESTING = Buffer.from(
  '\r\n \t\0:;",=\\/?#0123456789abcdefABCDEFxX-+\x7f\x80\xff\x0b\x0c',
  'latin1',
);
const TE_VALUES = [
  'chunked',
  'Chunked',
  'chunked, chunked',
  'gzip, chunked',
  'chunked, gzip',
  'identity',
  ' chunked',
  'chunked ',
  'chunked\t',
  'xchunked',
  'chunked;q=1',
  ',chunked',
  'chunked,',
  '',
  ',,chunked',
  'gzip,,chunked',
  ' , chunked',
  'chunked ,',
  'gzip,',
  '\tchunked',
  'gzip,\tchunked',
  'gzip\t,chunked',
  'x\ty',
];
const CL_VALUES = [
  '0',
  '1',
  '3',
  '5',
  '10',
  '100',
  '',
  '-1',
  '+3',
  '0x3',
  '3 3',
  '3,3',
  '3, 3',
  ' 3',
  '03',
  '99999999999999999999',
  '0000000000000000000003',
  '00000000000000000000',
  '0000000000000001000000000000000',
];
const CHUNK_SIZES = [
  '0',
  '1',
  '5',
  'a',
  'A',
  '00',
  '',
  ' 5',
  '5 ',
  '-5',
  '0x5',
  '5;',
  '5;a',
  '5;a=',
  '5;a="b"',
  '5;a=b c',
  'fffffffffffffffff',
  'g',
  ';',
  ';a',
  ';a=b',
];

const TRAILER_LINES = [
  'Content-Length: 5\r\n',
  'Transfer-Encoding: chunked\r\n',
  'Host: x\r\n',
  'host:\r\n',
  'content-length: 0\r\n',
  'X-Sum: 1\r\n',
  'X : y\r\n',
  ' folded\r\n',
  'X: a\0b\r\n',
  'X: y\n',
  'X:\r\n',
];

/** Request-targets of every form, valid or not for the method they end up with. */
const TARGETS = [
  '/',
  '/x?y',
  '*',
  'http://a/',
  'a:1',
  'example.com:443',
  '127.0.0.1:8080',
  '[::1]:443',
  '[v1.x]:80',
  '[::1]',
  'a:',
  ':80',
  'a:123456',
  'a:+1',
  'a@b:1',
  'a:1/',
  'a:1?x',
  'a:b:1',
  'e',
  'exampe.com:?43',
  '%41:80',
  "a!$&'()*+,;=b:1",
  '/\xc3\xa9',
  'a\x80:1',
];

type Rand = () => number;
const pick = <T>(rand: Rand, list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
const int = (rand: Rand, n: number) => Math.floor(rand() * n);

/** Offsets right after each LF in `buf` (line starts), within the first `limit` bytes. */
function lineStarts(buf: Buffer, limit = buf.length): number[] {
  const out: number[] = [];
  for (let i = 0; i < limit && i < buf.length; i++) if (buf[i] === LF) out.push(i + 1);
  return out;
}

/** End of the first head (after CRLFCRLF), or the length. */
function headEnd(buf: Buffer): number {
  const at = buf.indexOf('\r\n\r\n');
  return at === -1 ? buf.length : at + 4;
}

function splice(buf: Buffer, at: number, remove: number, insert: Buffer | string): Buffer {
  const ins = typeof insert === 'string' ? Buffer.from(insert, 'latin1') : insert;
  return Buffer.concat([buf.subarray(0, at), ins, buf.subarray(Math.min(buf.length, at + remove))]);
}

/** A position biased toward syntax: next to CR, LF, ':', ';', SP, or anywhere. */
function structuralPosition(rand: Rand, buf: Buffer): number {
  if (buf.length === 0) return 0;
  if (rand() < 0.4) return int(rand, buf.length + 1);
  for (let tries = 0; tries < 8; tries++) {
    const i = int(rand, buf.length);
    const b = buf[i];
    if (b === CR || b === LF || b === 0x3a || b === 0x3b || b === 0x20) return rand() < 0.5 ? i : i + 1;
  }
  return int(rand, buf.length + 1);
}

/** The value span [start, end) of the first `name:` field (case-insensitive) in the first head, or null. */
function fieldValue(buf: Buffer, name: string): [number, number] | null {
  const text = buf.toString('latin1', 0, headEnd(buf)).toLowerCase();
  const at = text.indexOf(`\n${name.toLowerCase()}:`);
  if (at === -1) return null;
  let s = at + name.length + 2;
  while (text[s] === ' ' || text[s] === '\t') s++;
  const e = text.indexOf('\r\n', s);
  return e === -1 ? null : [s, e];
}

type Mutation = (rand: Rand, buf: Buffer) => [Buffer, string];

const MUTATIONS: [weight: number, name: string, fn: Mutation][] = [
  [
    6,
    'insert',
    (rand, buf) => {
      const at = structuralPosition(rand, buf);
      const b = rand() < 0.8 ? INTERESTING[int(rand, INTERESTING.length)]! : int(rand, 256);
      return [splice(buf, at, 0, Buffer.from([b])), `insert ${b} at ${at}`];
    },
  ],
  [
    5,
    'delete',
    (rand, buf) => {
      const at = structuralPosition(rand, buf);
      const n = 1 + int(rand, rand() < 0.8 ? 1 : 4);
      return [splice(buf, at, n, ''), `delete ${n} at ${at}`];
    },
  ],
  [
    6,
    'replace',
    (rand, buf) => {
      const at = Math.min(structuralPosition(rand, buf), Math.max(0, buf.length - 1));
      const b = rand() < 0.8 ? INTERESTING[int(rand, INTERESTING.length)]! : int(rand, 256);
      return [splice(buf, at, 1, Buffer.from([b])), `replace ${at} with ${b}`];
    },
  ],
  [
    3,
    'duplicate-line',
    (rand, buf) => {
      const starts = lineStarts(buf, headEnd(buf) - 2);
      if (starts.length < 2) return [buf, 'noop'];
      const k = int(rand, starts.length - 1);
      const line = buf.subarray(starts[k]!, starts[k + 1]!);
      const at = pick(rand, starts);
      return [splice(buf, at, 0, Buffer.from(line)), `duplicate line ${k} at ${at}`];
    },
  ],
  [
    2,
    'swap-lines',
    (rand, buf) => {
      const starts = lineStarts(buf, headEnd(buf) - 2);
      if (starts.length < 3) return [buf, 'noop'];
      const k = int(rand, starts.length - 2);
      const a = buf.subarray(starts[k]!, starts[k + 1]!);
      const b = buf.subarray(starts[k + 1]!, starts[k + 2]!);
      return [
        splice(buf, starts[k]!, a.length + b.length, Buffer.concat([b, a])),
        `swap lines ${k}/${k + 1}`,
      ];
    },
  ],
  [
    1,
    'drop-line',
    (rand, buf) => {
      const starts = lineStarts(buf, headEnd(buf) - 2);
      if (starts.length < 2) return [buf, 'noop'];
      const k = int(rand, starts.length - 1);
      return [splice(buf, starts[k]!, starts[k + 1]! - starts[k]!, ''), `drop line ${k}`];
    },
  ],
  [
    4,
    'content-length',
    (rand, buf) => {
      const span = fieldValue(buf, 'content-length');
      const value = pick(rand, CL_VALUES);
      if (span === null || rand() < 0.3) {
        const starts = lineStarts(buf, headEnd(buf) - 1);
        if (starts.length === 0) return [buf, 'noop'];
        const at = pick(rand, starts);
        const name = pick(rand, ['Content-Length', 'content-length', 'Content-Length ', 'Content_Length']);
        return [splice(buf, at, 0, `${name}: ${value}\r\n`), `add ${name}: ${value}`];
      }
      return [splice(buf, span[0], span[1] - span[0], value), `Content-Length := ${value}`];
    },
  ],
  [
    4,
    'transfer-encoding',
    (rand, buf) => {
      const span = fieldValue(buf, 'transfer-encoding');
      const value = pick(rand, TE_VALUES);
      if (span === null || rand() < 0.4) {
        const starts = lineStarts(buf, headEnd(buf) - 1);
        if (starts.length === 0) return [buf, 'noop'];
        const at = pick(rand, starts);
        const name = pick(rand, [
          'Transfer-Encoding',
          'transfer-encoding',
          'Transfer-Encoding ',
          'Transfer_Encoding',
        ]);
        return [splice(buf, at, 0, `${name}: ${value}\r\n`), `add ${name}: ${value}`];
      }
      return [splice(buf, span[0], span[1] - span[0], value), `Transfer-Encoding := ${value}`];
    },
  ],
  [
    4,
    'chunk-size',
    (rand, buf) => {
      const body = headEnd(buf);
      // chunk-size lines: after the head or after a CRLF that ends chunk data
      const starts = lineStarts(buf).filter((s) => s >= body);
      if (starts.length === 0) return [buf, 'noop'];
      const at = pick(rand, starts);
      let e = at;
      while (e < buf.length && buf[e] !== CR && buf[e] !== LF) e++;
      const size = pick(rand, CHUNK_SIZES);
      return [splice(buf, at, e - at, size), `line at ${at} := ${JSON.stringify(size)}`];
    },
  ],
  [
    2,
    'truncate',
    (rand, buf) => {
      const at = int(rand, buf.length + 1);
      return [buf.subarray(0, at), `truncate at ${at}`];
    },
  ],
  [
    2,
    'pipeline',
    (rand, buf) => {
      const next = Buffer.from(pick(rand, CORPUS), 'latin1');
      return [Buffer.concat([buf, rand() < 0.2 ? Buffer.from('\r\n') : Buffer.alloc(0), next]), 'pipeline'];
    },
  ],
  [
    1,
    'case-flip',
    (rand, buf) => {
      if (buf.length === 0) return [buf, 'noop'];
      const at = int(rand, buf.length);
      const copy = Buffer.from(buf);
      const b = copy[at]!;
      if ((b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)) copy[at] = b ^ 0x20;
      return [copy, `case-flip ${at}`];
    },
  ],
  [
    2,
    'trailer',
    (rand, buf) => {
      // A field line right after a last chunk (in the trailer section), framing fields included.
      const at = buf.indexOf('\r\n0\r\n', headEnd(buf) - 2);
      if (at === -1) return [buf, 'noop'];
      const line = pick(rand, TRAILER_LINES);
      return [splice(buf, at + 5, 0, line), `trailer ${JSON.stringify(line)}`];
    },
  ],
  [
    1,
    'connection',
    (rand, buf) => {
      const starts = lineStarts(buf, headEnd(buf) - 1);
      if (starts.length === 0) return [buf, 'noop'];
      const value = pick(rand, [
        'close',
        'keep-alive',
        'upgrade',
        'Upgrade, close',
        'keep-alive, close',
        'x, close',
        'keep-alive close',
        '+ keep-alive',
        'close ,',
        'x upgrade',
        'upgrade\tx',
      ]);
      const upgrade = rand() < 0.3 ? pick(rand, ['Upgrade: h2c\r\n', 'Upgrade:\r\n', 'Upgrade: \t\r\n']) : '';
      return [
        splice(buf, pick(rand, starts), 0, `Connection: ${value}\r\n${upgrade}`),
        `Connection: ${value}`,
      ];
    },
  ],
  [
    1,
    'target',
    (rand, buf) => {
      // The request-target of the first request line, in any form, for CONNECT half of the time.
      let start = 0;
      while (buf[start] === CR && buf[start + 1] === LF) start += 2;
      const sp = buf.indexOf(0x20, start);
      const sp2 = sp === -1 ? -1 : buf.indexOf(0x20, sp + 1);
      if (sp2 === -1) return [buf, 'noop'];
      const target = pick(rand, TARGETS);
      const method = rand() < 0.5 ? 'CONNECT' : buf.toString('latin1', start, sp);
      const line = `${method} ${target}`;
      return [splice(buf, start, sp2 - start, line), `request line := ${JSON.stringify(line)}`];
    },
  ],
];
const TOTAL_WEIGHT = MUTATIONS.reduce((s, [w]) => s + w, 0);

/** A mutated input: the corpus entry, the mutations applied, the bytes. */
export interface FuzzInput {
  seedIndex: number;
  ops: string[];
  bytes: Buffer;
}

/** 32-bit mix of two integers (for per-iteration seeds: any iteration reproduces on its own). */
export function mixSeed(seed: number, iteration: number): number {
  let h = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(iteration >>> 0, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** The input of iteration `iteration` of a run seeded `seed`. */
export function makeInput(seed: number, iteration: number): FuzzInput {
  const rand = prng(mixSeed(seed, iteration));
  const seedIndex = int(rand, CORPUS.length);
  let bytes: Buffer = Buffer.from(CORPUS[seedIndex]!, 'latin1');
  const ops: string[] = [];
  const count = 1 + int(rand, rand() < 0.7 ? 2 : 4);
  for (let n = 0; n < count; n++) {
    let w = rand() * TOTAL_WEIGHT;
    let chosen = MUTATIONS[0]!;
    for (const m of MUTATIONS) {
      w -= m[0];
      if (w < 0) {
        chosen = m;
        break;
      }
    }
    const [next, what] = chosen[2](rand, bytes);
    bytes = next;
    ops.push(`${chosen[1]}: ${what}`);
  }
  return { seedIndex, ops, bytes };
}

// ---- classification -------------------------------------------------------------------------------------

/**
 * Differences kept on purpose, by class. Where we refuse what llhttp accepts, the class comes from our error
 * reason; classes marked STRICT also look for the named construct in the input and check the input again
 * without it, so a later difference cannot hide behind the refusal. Where we accept what llhttp refuses, only
 * non-framing classes exist here, and the input is checked again with the difference removed (method or
 * target rewritten), so nothing hides behind them. Classes marked LENIENT are not stricter than llhttp: they
 * are listed because the code means them, and reported.
 */
export const DELIBERATE: Readonly<Record<string, string>> = {
  'token-method':
    'any token is a method (RFC 9110 §9.1); llhttp only knows its list. Checked again with the method replaced',
  'target-syntax':
    'LENIENT: a request-target of visible ASCII (chars.ts TARGET) is checked for its form only (origin, absolute, ' +
    'asterisk; no URI grammar); llhttp parses the URL and refuses some of those bytes in some places. Not ' +
    'framing (the target ends at SP); checked again with a plain target. Never for a target with bytes outside ' +
    'visible ASCII (we refuse those, like llhttp) nor for CONNECT (connect-authority)',
  'close-wins':
    'a message with a close option ends the connection even when keep-alive is also sent (RFC 9112 §9.6); llhttp ' +
    'keeps an HTTP/1.0 connection with both alive. We stop earlier, never later',
  'request-line-spaces':
    'exactly one SP between request-target and version (RFC 9112 §3); llhttp skips extra spaces there',
  'upgrade-framing-headers':
    'Content-Length/Transfer-Encoding rules hold for CONNECT and upgrade requests too (RFC 9112 §6.1, §6.3); ' +
    'llhttp skips its Transfer-Encoding checks (list syntax included) when the request leaves HTTP after its head',
  'te-empty-element':
    'STRICT: a Transfer-Encoding list with an empty element (",chunked", "gzip,,chunked", " , chunked", or ' +
    '"gzip," in a field followed by a chunked one) is refused with 400 where llhttp skips the empty element. ' +
    'RFC 9110 §5.6.1.2 asks recipients to ignore empty list elements, but this is the framing field: RFC 9112 ' +
    '§6.3 (a request whose Transfer-Encoding cannot be relied on gets 400) and §11.2 (parsers that disagree on ' +
    'framing let requests be smuggled) win. Only our reason "empty element in Transfer-Encoding", and the input ' +
    'is checked again with the empty elements removed',
  'te-htab':
    'STRICT: HTAB inside a Transfer-Encoding value (not leading OWS), e.g. "gzip,<HTAB>chunked", ' +
    '"gzip<HTAB>,chunked", or "x<HTAB>y" in a field before a chunked one, is refused with 400 where llhttp reads ' +
    'on. HTAB is OWS (RFC 9110 §5.6.3), but llhttp reads it inconsistently here (it refuses "chunked<HTAB>" yet ' +
    'frames "gzip,<HTAB>chunked" as chunked), so we refuse every HTAB in this framing field rather than side ' +
    'with one reading (RFC 9112 §6.3: a Transfer-Encoding that cannot be relied on gets 400; §11.2 smuggling). ' +
    'Only our reason "invalid Transfer-Encoding", and the input is checked again with those HTABs made SP',
  'trailer-host':
    'STRICT: a Host field in the trailer section is refused with 400. Host is routing (RFC 9110 §7.2) and must ' +
    'be known before the content (§6.5.1: framing and routing fields cannot be processed as trailers, and a ' +
    'sender MUST NOT send a trailer field whose definition does not allow it; Host does not); llhttp accepts ' +
    'it. (Content-Length and Transfer-Encoding trailers llhttp refuses as well.) Only when the refused section ' +
    'has a Host line, and the input is checked again with that Host renamed',
  'connect-authority':
    'STRICT: a CONNECT target must be authority-form host:port (RFC 9112 §3.2.3; RFC 9110 §9.3.6: no default ' +
    'port, the port MUST be sent): reg-name, IPv4 or [IPv6] and 1-5 digits, else 400. llhttp accepts other ' +
    'CONNECT targets ("e", "/", "exampe.com:?43", "a:1/", "[v1.x]:80"). Only our reason "invalid CONNECT ' +
    'target", and the input is checked again with the target replaced by "a:1"',
  'duplicate-host': 'more than one Host: 400 (RFC 9112 §3.2 MUST)',
  'transfer-coding':
    'a transfer coding other than chunked: 501 (RFC 9112 §6.1), we decode none; llhttp only frames',
  'chunked-twice':
    'chunked applied more than once: 400 (RFC 9112 §6.1 MUST NOT); llhttp accepts a repeated chunked',
  'te-in-http10': 'Transfer-Encoding in an HTTP/1.0 request: 400 (RFC 9112 §6.1: faulty framing)',
  version:
    'only HTTP/1.0 and HTTP/1.1: others get 505 or 400 (RFC 9112 §2.3, §2.6); llhttp accepts 0.9 to 2.x',
  'target-form':
    'request-target must be origin-, absolute-, authority- (CONNECT) or asterisk-form (OPTIONS) (RFC 9112 §3.2)',
  limits:
    'our limits answer 413/414/431 (maxBodySize 1 MiB, 15 significant digits of Content-Length, 2^48 chunk ' +
    'size, ...)',
  expect: 'an Expect other than 100-continue: 417 (RFC 9110 §10.1.1)',
  'chunk-extension':
    'chunk extensions must be `;name[=token|quoted-string]` without whitespace (RFC 9112 §7.1.1); llhttp is laxer',
  'empty-line-before-request':
    'only CRLF empty lines are skipped before a request line (RFC 9112 §2.2 asks for that); llhttp skips bare CR/LF',
  'deferred-error':
    'a head or trailer error we report only once more bytes come, where llhttp stops at the bad byte: every ' +
    'continuation tried (server-driver.ts CONTINUATIONS) is refused, so it is never accepted',
};

export interface Verdict {
  /** `agree:*`, `deliberate:*` or `violation:*`. */
  cls: string;
  /** The class plus both outcomes and reasons: findings are kept (and minimized) per signature. */
  sig: string;
  detail: string;
}

const CRLF_ONLY = /^[\r\n]*$/;

function fieldsEqual(a: Field[], b: Field[]): boolean {
  return a.length === b.length && a.every(([n, v], k) => n === b[k]![0] && v === b[k]![1]);
}

/** The first difference between two messages both parsers completed, or null. */
export function messageDifference(ours: ParsedMessage, ref: ParsedMessage): string | null {
  if (ours.method !== ref.method)
    return `method ${JSON.stringify(ours.method)} vs ${JSON.stringify(ref.method)}`;
  if (ours.target !== ref.target)
    return `target ${JSON.stringify(ours.target)} vs ${JSON.stringify(ref.target)}`;
  if (ours.versionMajor !== ref.versionMajor || ours.versionMinor !== ref.versionMinor) {
    return `version ${ours.versionMajor}.${ours.versionMinor} vs ${ref.versionMajor}.${ref.versionMinor}`;
  }
  if (!fieldsEqual(ours.headers, ref.headers)) {
    return `headers ${JSON.stringify(ours.headers)} vs ${JSON.stringify(ref.headers)}`;
  }
  if (!ours.body.equals(ref.body)) {
    return `body ${JSON.stringify(ours.body.toString('latin1'))} vs ${JSON.stringify(ref.body.toString('latin1'))}`;
  }
  if (!fieldsEqual(ours.trailers, ref.trailers)) {
    return `trailers ${JSON.stringify(ours.trailers)} vs ${JSON.stringify(ref.trailers)}`;
  }
  return null;
}

/**
 * The Connection options of a message the way head.ts reads them: split on commas only, each element without
 * surrounding SP/HTAB, lower-case, compared whole.
 */
function connectionOptions(m: ParsedMessage | undefined): Set<string> {
  const out = new Set<string>();
  for (const [name, value] of m?.headers ?? []) {
    if (name.toLowerCase() !== 'connection') continue;
    for (const element of value.toLowerCase().split(',')) {
      const option = element.replace(/^[ \t]+|[ \t]+$/g, '');
      if (option !== '') out.add(option);
    }
  }
  return out;
}

/** llhttp error codes about message framing or line syntax (what an accepted message must never hit). */
const FRAMING_CODES =
  /HPE_(INVALID_CONTENT_LENGTH|UNEXPECTED_CONTENT_LENGTH|INVALID_TRANSFER_ENCODING|INVALID_CHUNK_SIZE|CR_EXPECTED|LF_EXPECTED|STRICT|INVALID_EOF_STATE|INVALID_HEADER_TOKEN|UNEXPECTED_SPACE|HIDDEN_BY_UPGRADE)/;

/** Framing-header refusals of our head parser (head.ts `classify`, `checkRequest`). */
const FRAMING_HEADER_REASONS = new Set([
  'chunked is not the final transfer coding',
  'both Content-Length and Transfer-Encoding',
  'more than one Content-Length',
  'empty Content-Length',
  'Content-Length is not a number',
  'chunked applied more than once',
  'unsupported transfer coding',
  'empty Transfer-Encoding',
  'empty element in Transfer-Encoding',
  'invalid Transfer-Encoding',
]);

/** A deliberate refusal: its class and, for STRICT classes, the input without the refused construct. */
interface Refusal {
  cls: string;
  /** The input with the construct removed, to be compared again (nothing may hide behind the refusal). */
  without?: Buffer;
}

/**
 * Which deliberate class our refusal belongs to, from its status and reason (head.ts, body.ts) and the input,
 * or null. `theirs` is llhttp's version of the message we refused, when it completed it. `ours` comes from the
 * whole input in one read, so a head error's `at` is where the refused message starts.
 */
function refusalClass(
  ours: DriveResult,
  input: Buffer,
  theirs: ReferenceMessage | undefined,
): Refusal | null {
  const e = ours.error;
  if (e === undefined) return null;
  if (e.status === 413 || e.status === 414 || e.status === 431) return { cls: 'limits' };
  if (e.status === 417) return { cls: 'expect' };
  if (e.status === 505) return { cls: 'version' };
  if (theirs?.upgrade === true && FRAMING_HEADER_REASONS.has(e.reason))
    return { cls: 'upgrade-framing-headers' };
  const strict = (cls: string, without: Buffer | null): Refusal | null =>
    without === null ? null : { cls, without };
  switch (e.reason) {
    case 'more than one Host':
      return { cls: 'duplicate-host' };
    case 'unsupported transfer coding':
      return { cls: 'transfer-coding' };
    case 'chunked applied more than once':
      return { cls: 'chunked-twice' };
    case 'Transfer-Encoding in an HTTP/1.0 request':
      return { cls: 'te-in-http10' };
    case 'asterisk-form is only for OPTIONS':
    case 'invalid request target':
      return { cls: 'target-form' };
    case 'chunk size line too long':
    case 'chunk size too large':
      return { cls: 'limits' };
    case 'invalid chunk extension name':
    case 'invalid chunk extension':
    case 'invalid chunk extension value':
    case 'invalid character in a quoted chunk extension':
    case 'invalid quoted-pair in a chunk extension':
      return { cls: 'chunk-extension' };
    case 'empty element in Transfer-Encoding':
      return strict('te-empty-element', withoutEmptyTeElements(input, e.at));
    case 'invalid Transfer-Encoding':
      return strict('te-htab', withoutTeHtabs(input, e.at));
    case 'framing field in trailers':
      return strict('trailer-host', withoutHostTrailer(input, ours));
    case 'invalid CONNECT target': {
      const line = partialRequestLine(input, e.at);
      return line.method === 'CONNECT'
        ? { cls: 'connect-authority', without: withPlainTarget(input, line) }
        : null;
    }
    case 'invalid method':
    case 'bare CR before the start line': {
      // llhttp skips any CR and LF before a request; we skip CRLF pairs only.
      const b = input[e.at];
      if (b === CR || b === LF) return { cls: 'empty-line-before-request' };
      break;
    }
    case 'invalid HTTP version': {
      let start = e.at;
      while (input[start] === CR && input[start + 1] === LF) start += 2;
      const end = input.indexOf(LF, start);
      const line = input.toString('latin1', start, end === -1 ? input.length : end);
      if (/^[^ ]+ [^ ]+ {2,}/.test(line)) return { cls: 'request-line-spaces' };
      break;
    }
  }
  return null;
}

/**
 * The input with the Transfer-Encoding field lines of the head starting at `from` rewritten by `edit` (given
 * the value after the colon), or null when no line changed.
 */
function withTeLines(input: Buffer, from: number, edit: (value: string) => string): Buffer | null {
  const end = input.indexOf('\r\n\r\n', from);
  const to = end === -1 ? input.length : end + 2;
  const head = input.toString('latin1', from, to);
  const rewritten = head.replace(/(\ntransfer-encoding:)([^\r\n]*)/gi, (_, name: string, value: string) => {
    return name + edit(value);
  });
  return rewritten === head ? null : splice(input, from, to - from, rewritten);
}

/** The input with the empty elements of the refused head's Transfer-Encoding lists removed, or null. */
function withoutEmptyTeElements(input: Buffer, from: number): Buffer | null {
  return withTeLines(input, from, (value) => {
    const elements = value.split(',');
    const kept = elements.filter((x) => x.replace(/[ \t]/g, '') !== '');
    return kept.length === elements.length ? value : ` ${kept.map((x) => x.trim()).join(', ')}`;
  });
}

/** The input with every HTAB in the refused head's Transfer-Encoding values made SP, or null. */
function withoutTeHtabs(input: Buffer, from: number): Buffer | null {
  return withTeLines(input, from, (value) => value.replace(/\t/g, ' '));
}

/**
 * The input with the Host trailer we refused renamed to Xost (same length), or null when renaming Host lines
 * does not take the refusal away (the refused field was Content-Length or Transfer-Encoding). The decoder parses
 * a trailer section once it has all of it, so the shortest prefix of the input it refuses the same way ends with
 * that section; the Host lines renamed are those between the refused message's head and there.
 */
function withoutHostTrailer(input: Buffer, ours: DriveResult): Buffer | null {
  const reason = ours.error?.reason;
  const refused = (bytes: Buffer, len: number) => {
    const r = drive(bytes.subarray(0, len));
    return r.outcome === 'error' && r.error?.reason === reason && r.messages.length === ours.messages.length;
  };
  let lo = ours.error?.at ?? 0;
  let hi = input.length;
  if (!refused(input, hi)) return null;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (refused(input, mid)) hi = mid;
    else lo = mid + 1;
  }
  const from = ours.error?.at ?? 0;
  const region = input.toString('latin1', from, hi).replace(/\nhost:/gi, '\nXost:');
  const without = splice(input, from, hi - from, region);
  return refused(without, hi) ? null : without;
}

/**
 * Whether llhttp, which waits for more of `input`, refuses every continuation in CONTINUATIONS without
 * completing another message: then our earlier refusal is the same decision, made sooner.
 */
function llhttpRefusesWhateverFollows(input: Buffer, ref: Llhttp, messages: number): boolean {
  let refused = false;
  for (const more of CONTINUATIONS) {
    const r = ref.parse(Buffer.concat([input, Buffer.from(more, 'latin1')]));
    if (r.messages.length > messages) return false;
    if (r.outcome === 'error') refused = true;
  }
  return refused;
}

function describe(r: DriveResult | ReferenceResult): string {
  const e = r.error;
  const err = e === undefined ? '' : 'status' in e ? ` ${e.status} ${e.reason}` : ` ${e.code} ${e.reason}`;
  return `${r.outcome}${err} after ${r.messages.length} message(s)`;
}

/** Where a request line starts and what its method and target are (possibly cut short). */
interface RequestLine {
  start: number;
  method: string;
  target: string;
}

/** The request line of the unfinished head at `from` (after empty lines), as far as it goes. */
function partialRequestLine(input: Buffer, from: number): RequestLine {
  let start = from;
  while (input[start] === CR && input[start + 1] === LF) start += 2;
  const text = input.toString('latin1', start, Math.min(input.length, start + 16 * 1024));
  const sp = text.indexOf(' ');
  const method = sp === -1 ? text : text.slice(0, sp);
  const rest = sp === -1 ? '' : text.slice(sp + 1);
  const target = rest.slice(0, rest.search(/[ \r\n]|$/));
  return { start, method, target };
}

/** The input with a request's method replaced. */
function withMethod(input: Buffer, m: RequestLine, method: string): Buffer {
  return splice(input, m.start, Buffer.byteLength(m.method, 'latin1'), method);
}

/** The input with a request's target replaced by a plain one of its form. */
function withPlainTarget(input: Buffer, m: RequestLine): Buffer {
  const at = m.start + Buffer.byteLength(m.method, 'latin1') + 1;
  let plain = '/x';
  if (m.method === 'CONNECT') plain = 'a:1';
  else if (m.target === '*') plain = '*';
  else if (!m.target.startsWith('/')) plain = 'http://a/';
  return splice(input, at, Buffer.byteLength(m.target, 'latin1'), plain);
}

/** Runs both parsers over `input` (ours whole) and classifies the result. */
export function compare(input: Buffer, ref: Llhttp): Verdict {
  return compareWith(input, ref, 0);
}

function compareWith(input: Buffer, ref: Llhttp, depth: number): Verdict {
  let ours: DriveResult;
  try {
    ours = drive(input);
  } catch (err) {
    const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
    return { cls: 'violation:throw', sig: `violation:throw ${String(err)}`, detail: text };
  }
  const theirs = ref.parse(input);
  const detail = `ours ${describe(ours)}; llhttp ${describe(theirs)}`;
  const llhttpSig = `llhttp ${theirs.outcome} ${theirs.error?.code ?? ''} ${theirs.error?.reason ?? ''}`;
  const verdict = (
    cls: string,
    extra = '',
    oursSig = `${ours.outcome} ${ours.error?.reason ?? ''}`,
  ): Verdict => ({
    cls,
    sig: `${cls} | ours ${oursSig} | ${llhttpSig}`,
    detail: extra === '' ? detail : `${extra}; ${detail}`,
  });
  const violation = (name: string, extra = '', oursSig?: string) =>
    verdict(`violation:${name}`, extra, oursSig);
  const deliberate = (name: string) => verdict(`deliberate:${name}`);
  /** A deliberate difference (a leniency, or a STRICT refusal): the input is checked again without it. */
  const recheck = (name: string, rewritten: Buffer): Verdict => {
    if (depth >= 3) return deliberate(name);
    const again = compareWith(rewritten, ref, depth + 1);
    if (!again.cls.startsWith('violation:')) return deliberate(name);
    return {
      cls: again.cls,
      sig: again.sig,
      detail: `${again.detail} (seen after removing ${name}: ${JSON.stringify(rewritten.toString('latin1'))})`,
    };
  };
  /** llhttp refused message `mine` (complete or pending for us) for a non-framing reason we know, or null. */
  const knownLeniency = (mine: RequestLine): Verdict | null => {
    const code = theirs.error?.code ?? '';
    if (/HPE_INVALID_METHOD|HPE_INVALID_CONSTANT/.test(code) && !LLHTTP_HTTP_METHODS.has(mine.method)) {
      return recheck('token-method', withMethod(input, mine, 'PUT'));
    }
    // Only a target of visible ASCII: we refuse other bytes (chars.ts TARGET), and a CONNECT target must be
    // authority-form (head.ts), so accepting one llhttp refuses there is a bug, not target-syntax.
    if (code === 'HPE_INVALID_URL' && mine.method !== 'CONNECT' && /^[\x21-\x7e]+$/.test(mine.target)) {
      return recheck('target-syntax', withPlainTarget(input, mine));
    }
    return null;
  };
  /** A deliberate refusal, compared again without its construct when it names one. */
  const refusal = (r: Refusal): Verdict =>
    r.without === undefined ? deliberate(r.cls) : recheck(r.cls, r.without);
  /** We stopped after message `k` (closed or upgraded) while llhttp read on. */
  const stoppedEarlier = (k: number, what: string): Verdict => {
    const mine = ours.messages[k];
    if (ours.outcome === 'closed' && connectionOptions(mine).has('close')) return deliberate('close-wins');
    return violation(ours.outcome === 'upgrade' ? 'upgrade-mismatch' : 'keepalive-mismatch', what);
  };

  const common = Math.min(ours.messages.length, theirs.messages.length);
  for (let k = 0; k < common; k++) {
    const mine = ours.messages[k]!;
    const d = messageDifference(mine, theirs.messages[k]!);
    if (d !== null) return violation('message-mismatch', `message ${k}: ${d}`);
    if (mine.upgrade !== theirs.messages[k]!.upgrade) {
      return violation('upgrade-mismatch', `message ${k} upgrade: ours ${mine.upgrade}`);
    }
  }
  const n = ours.messages.length;
  const m = theirs.messages.length;

  if (n === m) {
    if (ours.outcome === theirs.outcome) return verdict(`agree:${ours.outcome}`);
    switch (ours.outcome) {
      case 'closed':
        // We never read past a closing message; llhttp skips CR/LF there and refuses anything else.
        if (theirs.outcome === 'error') return verdict('agree:closed');
        if (theirs.outcome === 'success' && CRLF_ONLY.test(input.toString('latin1', ours.consumed))) {
          return verdict('agree:closed');
        }
        return stoppedEarlier(n - 1, `we closed after message ${n - 1}`);
      case 'error': {
        const r = refusalClass(ours, input, undefined);
        if (r !== null) return refusal(r);
        if (theirs.outcome === 'closed' || theirs.outcome === 'error') return verdict('agree:error');
        if (theirs.outcome === 'incomplete' && llhttpRefusesWhateverFollows(input, ref, m)) {
          return verdict('agree:error-sooner');
        }
        return violation('unclassified-refusal', `message ${n}`);
      }
      case 'incomplete':
        if (theirs.outcome === 'error') {
          const pending = ours.pending;
          const at = theirs.error?.offset ?? -1;
          if (pending !== undefined && at >= 0 && at <= pending.headEnd) {
            // llhttp refused a head we accepted (we wait for its body).
            const known = knownLeniency(pending);
            if (known !== null) return known;
            const framing = FRAMING_CODES.test(theirs.error?.code ?? '');
            return violation(
              framing ? 'accepts-bad-framing' : 'accepts-what-llhttp-refuses',
              'head accepted',
            );
          }
          if (refusedWhateverFollows(input, ours)) return deliberate('deferred-error');
          if (pending === undefined) {
            const known = knownLeniency(partialRequestLine(input, ours.consumed));
            if (known !== null) return known;
          }
          // Some continuation gets this head accepted (or completes a message) though llhttp refused it.
          if (FRAMING_CODES.test(theirs.error?.code ?? '')) {
            return violation('accepts-bad-framing', 'a continuation gets the head accepted');
          }
          return violation('pending-where-llhttp-refuses', 'we wait for more');
        }
        if (theirs.outcome === 'closed') {
          return violation('keepalive-mismatch', `llhttp closed after message ${n - 1}, we read on`);
        }
        return violation('outcome-mismatch');
      default:
        return violation('outcome-mismatch');
    }
  }

  if (n > m) {
    // We completed message m; llhttp did not.
    const mine = ours.messages[m]!;
    if (theirs.outcome === 'error') {
      const known = knownLeniency(mine);
      if (known !== null) return known;
      const framing = FRAMING_CODES.test(theirs.error?.code ?? '');
      return violation(
        framing ? 'accepts-bad-framing' : 'accepts-what-llhttp-refuses',
        `message ${m}`,
        'completed it',
      );
    }
    if (theirs.outcome === 'closed') {
      return violation('keepalive-mismatch', `llhttp closed after message ${m - 1}, we parsed another`);
    }
    return violation('framing-ours-complete', `message ${m}`, 'completed it');
  }

  // n < m: llhttp completed message n, we did not.
  if (ours.outcome === 'error') {
    const r = refusalClass(ours, input, theirs.messages[n]);
    if (r !== null) return refusal(r);
    return violation('unclassified-refusal', `message ${n}`);
  }
  if (ours.outcome === 'closed' || ours.outcome === 'upgrade') {
    return stoppedEarlier(n - 1, `we stopped after message ${n - 1}, llhttp parsed another`);
  }
  return violation('framing-llhttp-complete', `message ${n}`);
}

/** Our result split into seeded random reads must equal the whole-input result (or be a deferred error). */
export function splitDifference(input: Buffer, seed: number): Verdict | null {
  let whole: DriveResult;
  let split: DriveResult;
  try {
    whole = drive(input);
    split = drive(input, { chunking: { seed, maxChunk: 1 + (seed % 9) } });
  } catch (err) {
    const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
    return { cls: 'violation:throw', sig: `violation:throw ${String(err)}`, detail: text };
  }
  const detail = `whole ${describe(whole)}; split (seed ${seed}) ${describe(split)}`;
  const bad = (extra: string): Verdict => ({
    cls: 'violation:split-dependent',
    sig: `violation:split-dependent | whole ${whole.outcome} ${whole.error?.reason ?? ''} | split ${split.outcome} ${split.error?.reason ?? ''}`,
    detail: `${extra}${detail}`,
  });
  for (let k = 0; k < Math.min(whole.messages.length, split.messages.length); k++) {
    const d = messageDifference(split.messages[k]!, whole.messages[k]!);
    if (d !== null) return bad(`message ${k}: ${d}; `);
  }
  if (split.outcome === whole.outcome && split.messages.length === whole.messages.length) return null;
  if (
    whole.outcome === 'error' &&
    whole.messages.length === split.messages.length &&
    refusedWhateverFollows(input, split)
  ) {
    return null;
  }
  return bad('');
}

// ---- running --------------------------------------------------------------------------------------------

export interface Finding {
  cls: string;
  sig: string;
  detail: string;
  iteration: number;
  ops: string[];
  input: Buffer;
  minimized: Buffer;
}

export interface FuzzStats {
  seed: number;
  iterations: number;
  /** Inputs also checked for split invariance. */
  splitChecked: number;
  counts: Record<string, number>;
  /** First example of each violation signature (class and both results), at most `maxFindings`. */
  findings: Finding[];
  ms: number;
}

/**
 * Shrinks `input` while `same(candidate)` holds (greedy deletion of spans, then of single bytes), within
 * `budget` calls.
 */
export function minimize(input: Buffer, same: (candidate: Buffer) => boolean, budget = 3000): Buffer {
  let best = input;
  let calls = 0;
  for (let span = Math.max(1, best.length >> 1); span >= 1; span = span >> 1) {
    let i = 0;
    while (i < best.length && calls < budget) {
      const candidate = Buffer.concat([best.subarray(0, i), best.subarray(i + span)]);
      calls++;
      if (candidate.length < best.length && same(candidate)) best = candidate;
      else i += span;
    }
    if (calls >= budget) break;
  }
  return best;
}

export interface RunOptions {
  seed: number;
  iterations: number;
  /** First iteration (to replay one finding: `from: I, iterations: 1`). */
  from?: number;
  /** Every `splitEvery`-th input is also delivered in random reads and compared with itself whole. */
  splitEvery?: number;
  /** Called now and then with the stats so far (for progress output). */
  progress?: (stats: FuzzStats) => void;
  /** Minimize each finding (default true). */
  minimize?: boolean;
  /** Most findings kept (default 40). */
  maxFindings?: number;
}

export function runFuzz(options: RunOptions): FuzzStats {
  const ref = new Llhttp();
  const splitEvery = options.splitEvery ?? 4;
  const stats: FuzzStats = {
    seed: options.seed,
    iterations: 0,
    splitChecked: 0,
    counts: {},
    findings: [],
    ms: 0,
  };
  const started = performance.now();
  const seen = new Set<string>();
  const maxFindings = options.maxFindings ?? 40;
  const note = (v: Verdict, iteration: number, input: FuzzInput, check: (b: Buffer) => Verdict | null) => {
    stats.counts[v.cls] = (stats.counts[v.cls] ?? 0) + 1;
    if (!v.cls.startsWith('violation:') || seen.has(v.sig) || stats.findings.length >= maxFindings) return;
    seen.add(v.sig);
    const minimized =
      options.minimize === false ? input.bytes : minimize(input.bytes, (b) => check(b)?.sig === v.sig);
    stats.findings.push({
      cls: v.cls,
      sig: v.sig,
      detail: v.detail,
      iteration,
      ops: input.ops,
      input: input.bytes,
      minimized,
    });
  };
  try {
    const from = options.from ?? 0;
    for (let it = from; it < from + options.iterations; it++) {
      const input = makeInput(options.seed, it);
      const v = compare(input.bytes, ref);
      note(v, it, input, (b) => compare(b, ref));
      if (it % splitEvery === 0) {
        stats.splitChecked++;
        const splitSeed = mixSeed(options.seed ^ 0x5eed, it);
        const s = splitDifference(input.bytes, splitSeed);
        if (s !== null) note(s, it, input, (b) => splitDifference(b, splitSeed));
      }
      stats.iterations++;
      if (options.progress !== undefined && stats.iterations % 100_000 === 0) {
        stats.ms = performance.now() - started;
        options.progress(stats);
      }
    }
  } finally {
    ref.close();
  }
  stats.ms = performance.now() - started;
  return stats;
}

/** A finding as text: the seed and iteration reproduce it; inputs are JSON-escaped latin1. */
export function formatFinding(seed: number, f: Finding): string {
  return [
    `${f.sig} (seed ${seed}, iteration ${f.iteration}; mutations: ${f.ops.join(' | ')})`,
    `  input:     ${JSON.stringify(f.input.toString('latin1'))}`,
    `  minimized: ${JSON.stringify(f.minimized.toString('latin1'))}`,
    `  ${f.detail}`,
  ].join('\n');
}
