// llhttp's own request test cases (test/fixtures/llhttp/vectors-9.4.2.json, from llhttp 9.4.2's
// test/request/*.md) replayed through netloom's parser the way the server runs it (test/http1/parse-driver.ts),
// delivered whole, one byte per read and in seeded random reads. Every case in llhttp's strict mode (no lenient flags) must end as llhttp says (success, error,
// incomplete, upgrade) with the same complete messages (method, target, version, headers, body, trailers),
// unless the case is in DELIBERATE_DIFFERENCES with the reason we differ on purpose.
//
// Rules that are not per case:
// - llhttp's `HPE_CLOSED_CONNECTION` (bytes after a message that ends the connection) is our outcome 'closed':
//   the server closes after that response and never reads those bytes.
// - Header values are compared without trailing whitespace: llhttp's span keeps it, but it is not part of the
//   field value (RFC 9110 §5.5), and Node's binding trims it too.
// - Deferred errors: the head parser judges each line once its LF is in (protocols/http1/head.ts `parse`), so
//   an input llhttp refuses at a bad byte in the middle of a line is 'incomplete' for us until the line ends
//   (the server answers 408 or 431 if it never does). That counts as llhttp's 'error' only when every
//   continuation in server-driver.ts CONTINUATIONS is refused: then it is never accepted.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  type Chunking,
  type DriveResult,
  drive,
  type Field,
  type ParsedMessage,
  refusedWhateverFollows,
  startServerDriver,
  stopServerDriver,
} from './server-driver.ts';

// Every input runs through the real server, on in-memory connections of one loop.
before(startServerDriver);
after(stopServerDriver);

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const VECTORS = resolve(ROOT, 'test/fixtures/llhttp/vectors-9.4.2.json');

/**
 * Cases where we differ from llhttp on purpose, id -> why. A difference in the direction "llhttp refuses, we
 * accept" is never listed here when it is about message framing (Content-Length, Transfer-Encoding, chunk
 * syntax, line endings): that is a bug to fix, not a difference to keep.
 */
const DELIBERATE_DIFFERENCES: Readonly<Record<string, string>> = {
  // --- any token is a method (RFC 9110 §9.1: method = token); llhttp only knows its method list --------
  'request/invalid.md:356':
    'MKCOLA is a valid token method for us (RFC 9110 §9.1); llhttp only knows MKCOL and fails at the A',
  'request/invalid.md:66':
    'ANNOUNCE with HTTP/1.0 is a token method to us; llhttp keeps ANNOUNCE for RTSP/x.x only',
  // --- only HTTP/1.0 and HTTP/1.1 over "HTTP/" (RFC 9112 §2.3); no RTSP, ICE, HTTP/0.9 or h2 prior knowledge
  'request/method.md:372': 'ICE/1.0 is not HTTP: 400 (llhttp accepts ICE/1.0 for SOURCE, an Icecast quirk)',
  'request/method.md:400': 'RTSP/1.0 is not HTTP: 400 (llhttp also parses RTSP)',
  'request/method.md:430': 'RTSP/1.0 is not HTTP: 400 (llhttp also parses RTSP)',
  'request/sample.md:314':
    'HTTP/0.9 simple request "GET /" without a version: 400; RFC 9112 §2.3 leaves 0.9 out, no framing for it',
  'request/method.md:458':
    'PRI * HTTP/1.1 (the HTTP/2 preface): llhttp pauses for h2; we do not speak h2 here and asterisk-form is ' +
    'only for OPTIONS (RFC 9112 §3.2.4): 400',
  // --- request-target form (RFC 9112 §3.2): origin, absolute, authority (CONNECT only), asterisk (OPTIONS)
  'request/method.md:135':
    'M-SEARCH * (SSDP): asterisk-form is only for OPTIONS (RFC 9112 §3.2.4): 400; llhttp accepts * for any method',
  // --- a duplicated Host is refused (RFC 9112 §3.2: "a server MUST respond with 400 ... more than one Host") -
  // (no strict-mode case has one)
  // --- transfer codings other than chunked are not implemented: 501 (RFC 9112 §6.1 SHOULD) --------------
  'request/transfer-encoding.md:751':
    '`Transfer-Encoding: deflate, chunked`: we decode no other coding, so 501 (RFC 9112 §6.1); llhttp only frames',
  'request/transfer-encoding.md:793':
    '`Transfer-Encoding: deflate` + `Transfer-Encoding: chunked` (one list, RFC 9110 §5.3): 501 like 751',
};

/** Cases not replayed at all, id -> why (modes of llhttp's API the server has no equivalent of). */
const NOT_REPLAYED: Readonly<Record<string, string>> = {
  'request/content-length.md:444':
    'skipBody mode (on_headers_complete returns 1, as a client does after HEAD): a server never skips a ' +
    'request body',
};

// ---- reading the vectors (JSON is unknown until checked) ------------------------------------------------

interface ExpectedMessage {
  method: string;
  url: string;
  versionMajor: number;
  versionMinor: number;
  headers: Field[];
  trailers: Field[];
  body: Buffer;
  complete: boolean;
}

interface VectorCase {
  id: string;
  name: string;
  type: string;
  lenient: string[];
  skipBody: boolean;
  input: Buffer;
  outcome: string;
  errorName: string | null;
  completeMessages: number;
  messages: ExpectedMessage[];
}

type Json = Record<string, unknown>;

function obj(v: unknown, what: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what}: expected an object`);
  return v as Json;
}
function str(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new Error(`${what}: expected a string`);
  return v;
}
function num(v: unknown, what: string): number {
  if (typeof v !== 'number') throw new Error(`${what}: expected a number`);
  return v;
}
function arr(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${what}: expected an array`);
  return v;
}
function fields(v: unknown, what: string): Field[] {
  return arr(v, what).map((f, k) => {
    const pair = arr(f, `${what}[${k}]`);
    return [str(pair[0], `${what}[${k}][0]`), str(pair[1], `${what}[${k}][1]`)];
  });
}

function readVectors(): VectorCase[] {
  const root = obj(JSON.parse(readFileSync(VECTORS, 'utf8')) as unknown, 'vectors file');
  return arr(root.vectors, 'vectors').map((raw, n) => {
    const v = obj(raw, `vectors[${n}]`);
    const id = str(v.id, `vectors[${n}].id`);
    const mode = obj(v.mode, `${id}.mode`);
    const expected = obj(v.expected, `${id}.expected`);
    const error = expected.error === null ? null : obj(expected.error, `${id}.expected.error`);
    const messages = arr(expected.messages, `${id}.messages`).map((rm, k): ExpectedMessage => {
      const m = obj(rm, `${id}.messages[${k}]`);
      // "1.1"; absent for an HTTP/0.9 request line.
      const version = typeof m.version === 'string' ? m.version : '0.9';
      const [major, minor] = version.split('.').map(Number);
      return {
        method: str(m.method ?? '', `${id}.method`),
        url: str(m.url ?? '', `${id}.url`),
        versionMajor: major ?? 0,
        versionMinor: minor ?? 0,
        headers: fields(m.headers, `${id}.headers`),
        trailers: fields(m.trailers, `${id}.trailers`),
        body: Buffer.from(str(m.bodyBase64 ?? '', `${id}.bodyBase64`), 'base64'),
        complete: m.complete === true,
      };
    });
    return {
      id,
      name: str(v.name, `${id}.name`),
      type: str(v.type, `${id}.type`),
      lenient: arr(mode.lenient, `${id}.mode.lenient`).map((x) => str(x, `${id}.mode.lenient[]`)),
      skipBody: mode.skipBody === true,
      input: Buffer.from(str(v.inputBase64, `${id}.inputBase64`), 'base64'),
      outcome: str(expected.outcome, `${id}.outcome`),
      errorName: error === null ? null : str(error.name, `${id}.error.name`),
      completeMessages: num(expected.completeMessages, `${id}.completeMessages`),
      messages,
    };
  });
}

// ---- comparing ------------------------------------------------------------------------------------------

/** The vectors' strings are the UTF-8 decoding of the bytes; ours are latin1 (one char per byte). */
const sameBytes = (ours: string, expected: string) =>
  Buffer.from(ours, 'latin1').equals(Buffer.from(expected, 'utf8'));
const trimOws = (s: string) => s.replace(/[ \t]+$/, '');

function fieldsDiffer(ours: Field[], expected: Field[], what: string): string | null {
  if (ours.length !== expected.length) {
    return `${what}: ${JSON.stringify(ours)} vs llhttp ${JSON.stringify(expected)}`;
  }
  for (let k = 0; k < ours.length; k++) {
    const [on, ov] = ours[k]!;
    const [en, ev] = expected[k]!;
    if (!sameBytes(on, en) || !sameBytes(ov, trimOws(ev))) {
      return `${what}[${k}]: ${JSON.stringify(ours[k])} vs llhttp ${JSON.stringify(expected[k])}`;
    }
  }
  return null;
}

function messageDiffers(ours: ParsedMessage, expected: ExpectedMessage, k: number): string | null {
  if (!sameBytes(ours.method, expected.method))
    return `message ${k} method ${ours.method} vs ${expected.method}`;
  if (!sameBytes(ours.target, expected.url)) return `message ${k} target ${ours.target} vs ${expected.url}`;
  if (ours.versionMajor !== expected.versionMajor || ours.versionMinor !== expected.versionMinor) {
    return `message ${k} version ${ours.versionMajor}.${ours.versionMinor} vs ${expected.versionMajor}.${expected.versionMinor}`;
  }
  return (
    fieldsDiffer(ours.headers, expected.headers, `message ${k} headers`) ??
    (ours.body.equals(expected.body)
      ? null
      : `message ${k} body ${JSON.stringify(ours.body.toString('latin1'))} vs ${JSON.stringify(expected.body.toString('latin1'))}`) ??
    fieldsDiffer(ours.trailers, expected.trailers, `message ${k} trailers`)
  );
}

/** What llhttp's outcome is called in ours. */
function expectedOutcome(c: VectorCase): string {
  if (c.outcome === 'error' && c.errorName === 'HPE_CLOSED_CONNECTION') return 'closed';
  return c.outcome;
}

function describeResult(r: DriveResult): string {
  const err = r.error ? ` (${r.error.status} ${r.error.reason}, ${r.error.phase})` : '';
  return `${r.outcome}${err} after ${r.messages.length} complete message(s)`;
}

/** A mismatch between our result and llhttp's expectation, or null. */
function mismatch(c: VectorCase, ours: DriveResult): string | null {
  const want = expectedOutcome(c);
  const complete = c.messages.filter((m) => m.complete);
  const outcomeOk = ours.outcome === want || (want === 'error' && refusedWhateverFollows(c.input, ours));
  if (!outcomeOk) {
    return `outcome: ours ${describeResult(ours)}, llhttp ${c.outcome}${c.errorName ? ` ${c.errorName}` : ''} after ${complete.length} complete message(s)`;
  }
  if (ours.messages.length !== complete.length) {
    return `complete messages: ours ${ours.messages.length}, llhttp ${complete.length} (${describeResult(ours)})`;
  }
  for (let k = 0; k < complete.length; k++) {
    const d = messageDiffers(ours.messages[k]!, complete[k]!, k);
    if (d !== null) return d;
  }
  return null;
}

// ---- the tests ------------------------------------------------------------------------------------------

const all = readVectors();
const replayed = all.filter(
  (c) => c.type.startsWith('request') && c.lenient.length === 0 && !(c.id in NOT_REPLAYED),
);
/** Whole, one byte per read, and random reads of 1 to 5 bytes from a fixed seed. */
const deliveries: readonly [string, Chunking][] = [
  ['whole', 'whole'],
  ['bytes', 'bytes'],
  ['random', { seed: 9421, maxChunk: 5 }],
];

test('the vectors file holds the request cases this test expects', () => {
  assert.ok(replayed.length >= 120, `only ${replayed.length} strict request cases in ${VECTORS}`);
  for (const id of [...Object.keys(DELIBERATE_DIFFERENCES), ...Object.keys(NOT_REPLAYED)]) {
    assert.ok(
      all.some((c) => c.id === id),
      `${id} is listed but not in the vectors`,
    );
  }
  for (const c of replayed) {
    assert.equal(
      c.messages.filter((m) => m.complete).length,
      c.completeMessages,
      `${c.id}: completeMessages`,
    );
  }
});

for (const c of replayed) {
  const reason = DELIBERATE_DIFFERENCES[c.id];
  const label = `${c.id} ${c.name}`;
  if (reason !== undefined) {
    test(`${label} (deliberate difference: ${reason})`, () => {
      // The entry must still be needed: at least one delivery differs from llhttp.
      const whole = drive(c.input, { chunking: 'whole' });
      const diffs = deliveries.map(([, chunking]) => mismatch(c, drive(c.input, { chunking })));
      assert.ok(
        diffs.some((d) => d !== null),
        `${c.id} now agrees with llhttp: remove it from DELIBERATE_DIFFERENCES`,
      );
      // An allowlisted case never makes us accept what llhttp refused on a framing error.
      assert.ok(
        !(
          c.outcome === 'error' &&
          c.errorName !== null &&
          /CONTENT_LENGTH|TRANSFER_ENCODING|CHUNK|LF_EXPECTED|CR_EXPECTED|STRICT/.test(c.errorName) &&
          whole.outcome === 'success'
        ),
        `${c.id}: llhttp refuses the framing (${c.errorName}) and we accept: never allowlist this`,
      );
    });
    continue;
  }
  for (const [delivery, chunking] of deliveries) {
    test(`${label} [${delivery}]`, () => {
      const ours = drive(c.input, { chunking });
      const d = mismatch(c, ours);
      assert.equal(
        d,
        null,
        `${c.id} [${delivery}] input ${JSON.stringify(c.input.toString('latin1'))}: ${d}`,
      );
    });
  }
}

test('summary of the replay', (t) => {
  let agree = 0;
  for (const c of replayed) {
    if (c.id in DELIBERATE_DIFFERENCES) continue;
    if (deliveries.every(([, chunking]) => mismatch(c, drive(c.input, { chunking })) === null)) agree++;
  }
  t.diagnostic(
    `${replayed.length} strict request cases: ${agree} agree with llhttp in every delivery, ` +
      `${Object.keys(DELIBERATE_DIFFERENCES).length} deliberate differences, ` +
      `${replayed.length - agree - Object.keys(DELIBERATE_DIFFERENCES).length} failing, ` +
      `${Object.keys(NOT_REPLAYED).length} not replayed`,
  );
});
