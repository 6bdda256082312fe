// Differential fuzzing of our HTTP/1.1 request parser against llhttp (Node's own parser, strict mode), seeded
// so every failure reproduces: the message names the seed and the iteration, and
// `node --conditions=netloom-source bench/fuzz-http1.ts --seed S --from I --iterations 1` replays one input. The classification lives in
// fuzz-core.ts: differences we keep on purpose are named in DELIBERATE; anything else fails here, in
// particular a message llhttp refuses for a framing reason that we accept.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  CORPUS,
  compare,
  DELIBERATE,
  formatFinding,
  LLHTTP_METHOD_CODES,
  Llhttp,
  makeInput,
  runFuzz,
} from './fuzz-core.ts';
import { drive, startServerDriver, stopServerDriver } from './server-driver.ts';

// Every input runs through the real server, on in-memory connections of one loop.
before(startServerDriver);
after(stopServerDriver);

const SEED = 0x6e6c6f6d; // "nlom"
const ITERATIONS = 100_000;

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const VECTORS = resolve(ROOT, 'test/fixtures/llhttp/vectors-9.4.2.json');

interface ReferenceVector {
  id: string;
  input: Buffer;
  outcome: string;
  methods: [code: number, name: string][];
}

/** The strict request vectors, just what checking the reference needs. */
function referenceVectors(): ReferenceVector[] {
  const root: unknown = JSON.parse(readFileSync(VECTORS, 'utf8'));
  if (typeof root !== 'object' || root === null || !('vectors' in root) || !Array.isArray(root.vectors)) {
    throw new Error(`${VECTORS}: no vectors`);
  }
  const out: ReferenceVector[] = [];
  for (const v of root.vectors as unknown[]) {
    if (typeof v !== 'object' || v === null) continue;
    const c = v as Record<string, unknown>;
    const mode = c.mode as Record<string, unknown> | undefined;
    const expected = c.expected as Record<string, unknown> | undefined;
    if (c.kind !== 'request' || mode === undefined || expected === undefined) continue;
    if (!Array.isArray(mode.lenient) || mode.lenient.length > 0 || mode.skipBody === true) continue;
    const methods: [number, string][] = [];
    for (const m of Array.isArray(expected.messages) ? (expected.messages as unknown[]) : []) {
      const msg = m as Record<string, unknown>;
      if (typeof msg.methodCode === 'number' && typeof msg.method === 'string') {
        methods.push([msg.methodCode, msg.method]);
      }
    }
    out.push({
      id: String(c.id),
      input: Buffer.from(String(c.inputBase64), 'base64'),
      outcome: String(expected.outcome),
      methods,
    });
  }
  return out;
}

test("the reference is Node's llhttp and agrees with llhttp's own request vectors", (t) => {
  const ref = new Llhttp();
  try {
    t.diagnostic(`llhttp ${ref.version} through node:_http_common (Node ${process.version})`);
    const vectors = referenceVectors();
    assert.ok(vectors.length > 100);
    for (const v of vectors) {
      for (const [code, name] of v.methods)
        assert.equal(LLHTTP_METHOD_CODES[code], name, `method code ${code}`);
      // Node's binding ships 9.4.3, the vectors are 9.4.2: the outcomes must still be the same.
      const r = ref.parse(v.input);
      const outcome = r.outcome === 'closed' ? 'error' : r.outcome; // HPE_CLOSED_CONNECTION is an error there
      assert.equal(outcome, v.outcome, `${v.id}: reference says ${r.outcome} ${r.error?.code ?? ''}`);
    }
  } finally {
    ref.close();
  }
});

test('every corpus entry parses the same in both parsers', () => {
  const ref = new Llhttp();
  try {
    for (const [k, entry] of CORPUS.entries()) {
      const input = Buffer.from(entry, 'latin1');
      const v = compare(input, ref);
      assert.match(
        v.cls,
        /^agree:(success|upgrade|closed)$/,
        `corpus ${k} ${JSON.stringify(entry)}: ${v.detail}`,
      );
      assert.ok(drive(input).messages.length >= 1);
    }
  } finally {
    ref.close();
  }
});

test('an empty or extension-only first chunk-size line is refused, never read as the last chunk', () => {
  // The request-smuggling bug: `\r\n` where the first chunk-size line belongs was taken for `0\r\n`, so the
  // body ended at once and the bytes after it were parsed as a second request.
  const ref = new Llhttp();
  try {
    for (const sizeLine of ['', ';a', ';a=b', ' ']) {
      const text =
        'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n' +
        `${sizeLine}\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n`;
      const input = Buffer.from(text, 'latin1');
      for (const chunking of ['whole', 'bytes', { seed: 7, maxChunk: 5 }] as const) {
        const r = drive(input, { chunking });
        assert.equal(r.outcome, 'error', `${JSON.stringify(text)} ${JSON.stringify(chunking)}: ${r.outcome}`);
        assert.equal(r.error?.status, 400);
        assert.equal(r.messages.length, 0, 'no message, and above all no GET /admin');
      }
      assert.equal(compare(input, ref).cls, 'agree:error', JSON.stringify(text));
    }
  } finally {
    ref.close();
  }
});

/**
 * How each deliberate parser change of this round compares with llhttp, pinned: llhttp agrees where it should,
 * and where we are stricter the refusal lands in its own narrow class.
 */
const PINNED: readonly [input: string, cls: string][] = [
  // Transfer-Encoding list syntax (head.ts transferCodings).
  [
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n',
    'deliberate:te-empty-element',
  ],
  [
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,,chunked\r\n\r\n0\r\n\r\n',
    'deliberate:te-empty-element',
  ],
  [
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'deliberate:te-empty-element',
  ],
  ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n', 'agree:error'],
  ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n0\r\n\r\n', 'agree:error'],
  ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n', 'agree:error'],
  ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \tchunked \r\n\r\n0\r\n\r\n', 'agree:success'],
  ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\tchunked\r\n\r\n0\r\n\r\n', 'deliberate:te-htab'],
  [
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x\ty\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    'deliberate:te-htab',
  ],
  ['CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: ,chunked\r\n\r\n', 'deliberate:upgrade-framing-headers'],
  // Framing and routing fields in trailers (body.ts).
  [
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHost: b\r\n\r\n',
    'deliberate:trailer-host',
  ],
  [
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n',
    'agree:error',
  ],
  [
    'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTransfer-Encoding: x\r\n\r\n',
    'agree:error',
  ],
  // Request-target bytes >= 0x80 (chars.ts TARGET).
  ['GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n', 'agree:error'],
  ['GET http://\xff/ HTTP/1.1\r\nHost: a\r\n\r\n', 'agree:error'],
  // CONNECT authority-form (head.ts AUTHORITY_FORM).
  ['CONNECT example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n', 'agree:upgrade'],
  ['CONNECT [::1]:443 HTTP/1.1\r\nHost: a\r\n\r\n', 'agree:upgrade'],
  ['CONNECT 127.0.0.1:8080 HTTP/1.1\r\nHost: a\r\n\r\n', 'agree:upgrade'],
  ['CONNECT exampe.com:?43 HTTP/1.1\r\nHost: a\r\n\r\n', 'deliberate:connect-authority'],
  ['CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n', 'deliberate:connect-authority'],
  ['CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n', 'deliberate:connect-authority'],
  ['CONNECT a:123456 HTTP/1.1\r\nHost: a\r\n\r\n', 'deliberate:connect-authority'],
  ['CONNECT http://a/ HTTP/1.1\r\nHost: a\r\n\r\n', 'deliberate:connect-authority'],
  // Connection options compared whole (head.ts connectionTokens).
  ['GET /a HTTP/1.0\r\nConnection: + keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n', 'agree:closed'],
  [
    'GET /a HTTP/1.1\r\nHost: a\r\nConnection: keep-alive close\r\n\r\nGET /b HTTP/1.1\r\n\r\n',
    'agree:success',
  ],
  ['GET /a HTTP/1.1\r\nHost: a\r\nConnection: x , close\r\n\r\nGET /b HTTP/1.1\r\n\r\n', 'agree:closed'],
  [
    'GET /a HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\nGET /b HTTP/1.0\r\n\r\n',
    'deliberate:close-wins',
  ],
  // An empty Upgrade is no upgrade.
  [
    'GET /a HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade:\r\n\r\nGET /b HTTP/1.1\r\n\r\n',
    'agree:success',
  ],
  [
    'GET /a HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: \t\r\n\r\nGET /b HTTP/1.1\r\n\r\n',
    'agree:success',
  ],
  // Content-Length: leading zeros are not significant digits.
  ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0000000000000000000003\r\n\r\nabc', 'agree:success'],
  ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0001000000000000000\r\n\r\n', 'deliberate:limits'],
];

test('pinned inputs for the deliberate parser changes compare as classified', () => {
  const ref = new Llhttp();
  try {
    for (const [text, cls] of PINNED) {
      const v = compare(Buffer.from(text, 'latin1'), ref);
      assert.equal(v.cls, cls, `${JSON.stringify(text)}: ${v.detail}`);
    }
  } finally {
    ref.close();
  }
});

test('inputs are a pure function of (seed, iteration)', () => {
  for (const it of [0, 1, 999, 54_321]) {
    assert.deepEqual(makeInput(SEED, it).bytes, makeInput(SEED, it).bytes);
  }
  assert.notDeepEqual(makeInput(SEED, 1).bytes, makeInput(SEED + 1, 1).bytes);
});

test(`differential fuzz: ${ITERATIONS} mutated requests against llhttp (seed ${SEED})`, {
  timeout: 120_000,
}, (t) => {
  const stats = runFuzz({ seed: SEED, iterations: ITERATIONS, splitEvery: 4 });
  const perSecond = Math.round(stats.iterations / (stats.ms / 1000));
  t.diagnostic(
    `${stats.iterations} inputs (${stats.splitChecked} also split into random reads) in ${Math.round(stats.ms)} ms: ` +
      `${perSecond} inputs/s`,
  );
  const classes = Object.entries(stats.counts).sort((a, b) => b[1] - a[1]);
  for (const [cls, count] of classes) t.diagnostic(`${cls.padEnd(40)} ${count}`);

  assert.equal(stats.iterations, ITERATIONS);
  // Every deliberate class that occurred is one we documented.
  for (const [cls] of classes) {
    if (cls.startsWith('deliberate:')) assert.ok(cls.slice(11) in DELIBERATE, `${cls} is not documented`);
  }
  // The fuzzer reaches the interesting places at all.
  for (const cls of ['agree:success', 'agree:error', 'agree:incomplete', 'agree:upgrade', 'agree:closed']) {
    assert.ok((stats.counts[cls] ?? 0) > 0, `no input ended as ${cls}`);
  }
  const report = stats.findings.map((f) => formatFinding(stats.seed, f)).join('\n\n');
  assert.equal(
    stats.findings.length,
    0,
    `${stats.findings.length} violation signature(s), seed ${stats.seed} ` +
      `(replay one: node bench/fuzz-http1.ts --seed ${stats.seed} --from <iteration> --iterations 1):\n\n${report}`,
  );
});
