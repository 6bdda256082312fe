// Drives netloom's real HTTP/1.1 server (the `server()` handler and its Exchange) over an in-memory
// connection (`loop.pipe`), with the input cut into reads exactly as asked: the conformance replay of
// llhttp's vectors and the differential fuzzer judge the server itself, not a copy of its decisions.
//
// The handler records every request (method, target, version, headers, body, trailers) and answers it with
// an empty 200. Like llhttp, the run stops after a message that asks for a protocol change (CONNECT right
// after its head; `Connection: upgrade` with a non-empty `Upgrade` field after its body): the handler
// accepts it with `res.upgrade` and the outcome is 'upgrade'. A message that ends the connection (HTTP/1.1
// `Connection: close`, HTTP/1.0 without keep-alive, a CONNECT not accepted) gives 'closed' when bytes follow
// it (the server closes and never reads them). Errors are the server's own answers (status and reason).
import { type Engine, type EventHandler, type EventLoop, serve } from 'netloom';
import { type Request, type Response, server } from 'netloom/http1';
import { prng } from '../helpers.ts';

/** A header or trailer field as sent: [name, value], value without surrounding whitespace (latin1). */
export type Field = [name: string, value: string];

export interface ParsedMessage {
  method: string;
  target: string;
  versionMajor: number;
  versionMinor: number;
  headers: Field[];
  body: Buffer;
  trailers: Field[];
}

export interface DrivenMessage extends ParsedMessage {
  /** Absolute offset of the first byte of the request line (after any skipped empty lines). */
  start: number;
  /** Absolute offset right after the head (after its CRLFCRLF). */
  headEnd: number;
  /** Absolute offset right after the message (head and body). */
  end: number;
  /** The server keeps the connection open after this message. */
  keepAlive: boolean;
  /** The message asks to leave HTTP (CONNECT, or `Connection: upgrade` with a non-empty `Upgrade`). */
  upgrade: boolean;
}

/**
 * - success: every byte was consumed by complete messages (only empty lines may remain);
 * - error: the parser or the server refused the input (`error` says why);
 * - incomplete: the input ends inside a message;
 * - upgrade: parsing stopped after a message that leaves HTTP;
 * - closed: a message ended the connection and bytes followed it.
 */
export type DriveOutcome = 'success' | 'error' | 'incomplete' | 'upgrade' | 'closed';

export interface DriveError {
  status: number;
  reason: string;
  /** Which part refused: the head parser, the body decoder, or a server check after the head (413, 417). */
  phase: 'head' | 'body' | 'server';
  /** Absolute offset of the first unconsumed byte when the error was raised (not the exact byte). */
  at: number;
}

export interface DriveResult {
  outcome: DriveOutcome;
  /** Complete messages, in order. */
  messages: DrivenMessage[];
  error?: DriveError;
  /** The input ended inside a message (outcome 'incomplete'). */
  incomplete: boolean;
  /** With 'incomplete': the message whose head was parsed and whose body is unfinished (body so far). */
  pending?: DrivenMessage;
  /** Absolute offset where parsing stopped (after the last consumed byte). */
  consumed: number;
}

/** How the input is cut into reads: all at once, one byte per read, random sizes from a seed, or explicit sizes. */
export type Chunking = 'whole' | 'bytes' | { seed: number; maxChunk?: number } | readonly number[];

export interface DriveLimits {
  maxStartLine: number;
  maxHeaderBytes: number;
  maxHeaders: number;
  maxBodySize: number;
  maxChunkLine: number;
}

export interface DriveOptions {
  /** Refuse HTTP/1.1 requests without Host (the server's default is true; llhttp replays use false). */
  requireHost?: boolean;
  /** Read boundaries; default 'whole'. */
  chunking?: Chunking;
  /** Parser limits; defaults are the server's. */
  limits?: Partial<DriveLimits>;
}

/** The server's defaults (protocols/http1/server.ts). */
export const SERVER_LIMITS: Readonly<DriveLimits> = {
  maxStartLine: 8 * 1024,
  maxHeaderBytes: 16 * 1024,
  maxHeaders: 100,
  maxBodySize: 1024 * 1024,
  maxChunkLine: 4 * 1024,
};

const EMPTY = Buffer.alloc(0);

/** Cuts `input` into the reads `chunking` describes (views of `input`, no copies). */
export function splitInput(input: Buffer, chunking: Chunking = 'whole'): Buffer[] {
  if (input.length === 0) return [];
  if (chunking === 'whole') return [input];
  const out: Buffer[] = [];
  if (chunking === 'bytes') {
    for (let i = 0; i < input.length; i++) out.push(input.subarray(i, i + 1));
    return out;
  }
  if (Array.isArray(chunking)) {
    let i = 0;
    for (const size of chunking as readonly number[]) {
      if (i >= input.length) break;
      const n = Math.max(1, Math.floor(size));
      out.push(input.subarray(i, i + n));
      i += n;
    }
    if (i < input.length) out.push(input.subarray(i));
    return out;
  }
  const spec = chunking as { seed: number; maxChunk?: number };
  const rand = prng(spec.seed);
  const max = Math.max(1, spec.maxChunk ?? 16);
  for (let i = 0; i < input.length; ) {
    const n = 1 + Math.floor(rand() * max);
    out.push(input.subarray(i, i + n));
    i += n;
  }
  return out;
}

/**
 * Whether `buf[from, end)` is nothing but empty lines (CRLF pairs, the last one possibly still missing its LF):
 * what the head parser skips before a request line. Such bytes do not start a message, for llhttp either.
 */
function onlyEmptyLines(buf: Buffer, from: number): boolean {
  let i = from;
  while (i + 1 < buf.length && buf[i] === 0x0d && buf[i + 1] === 0x0a) i += 2;
  return i >= buf.length || (i === buf.length - 1 && buf[i] === 0x0d);
}

/** What the recording handler saw of the input being driven. */
interface Recording {
  messages: DrivenMessage[];
  /** The message whose head is in and whose body is not complete. */
  pending: DrivenMessage | null;
  upgraded: boolean;
  /** Bytes delivered so far, and the offset of the first byte the server had not consumed. */
  delivered: number;
  consumedAt: () => number;
}

let recording: Recording | null = null;

/** Swallows a tunnel's or upgraded protocol's bytes (the run is over once a connection leaves HTTP). */
const SINK: EventHandler = {
  onTraffic(conn) {
    conn.discard();
  },
};

/** The recording handler: what a server handler sees of each request, kept as a DrivenMessage. */
function record(req: Request, res: Response): void {
  const rec = recording!;
  const headEnd = rec.consumedAt();
  const upgrade = req.method === 'CONNECT' || req.upgrade !== undefined;
  const previous = rec.messages[rec.messages.length - 1];
  const msg: DrivenMessage = {
    method: req.method,
    target: req.target,
    versionMajor: 1,
    versionMinor: req.httpVersion === '1.1' ? 1 : 0,
    headers: req.headerPairs(),
    body: EMPTY,
    trailers: [],
    start: previous === undefined ? 0 : previous.end,
    headEnd,
    end: 0,
    keepAlive: req.keepAlive,
    upgrade,
  };
  if (req.method === 'CONNECT') {
    // No content: the tunnel starts right after the head.
    msg.end = headEnd;
    rec.messages.push(msg);
    rec.upgraded = true;
    res.upgrade(SINK);
    return;
  }
  rec.pending = msg;
  const parts: Buffer[] = [];
  req.pipe({
    data(chunk) {
      parts.push(Buffer.from(chunk));
    },
    end(trailers) {
      msg.body = parts.length === 0 ? EMPTY : Buffer.concat(parts);
      msg.trailers = trailers.map(([name, value]): Field => [name, value]);
      msg.end = rec.consumedAt();
      msg.keepAlive = req.keepAlive;
      rec.messages.push(msg);
      rec.pending = null;
      if (upgrade) {
        rec.upgraded = true;
        res.upgrade(SINK);
      } else {
        res.end();
      }
    },
    error() {
      msg.body = parts.length === 0 ? EMPTY : Buffer.concat(parts);
    },
  });
}

// ---- the loop and the servers the driver runs on ---------------------------------------------------------

let driverLoop: EventLoop | null = null;
let driverEngine: Engine | null = null;
const servers = new Map<string, EventHandler>();

/** Starts the loop the driver runs its in-memory connections on (once per process; call before `drive`). */
export async function startServerDriver(): Promise<void> {
  if (driverLoop !== null) return;
  driverEngine = await serve(
    (loop: EventLoop) => {
      driverLoop = loop;
      return {};
    },
    { loops: 1 },
  );
}

/** Stops the driver's loop. */
export async function stopServerDriver(): Promise<void> {
  const engine = driverEngine;
  driverEngine = null;
  driverLoop = null;
  servers.clear();
  await engine?.stop({ deadline: 0 });
}

function serverFor(limits: DriveLimits, requireHost: boolean): EventHandler {
  const key = `${limits.maxStartLine}/${limits.maxHeaderBytes}/${limits.maxHeaders}/${limits.maxBodySize}/${limits.maxChunkLine}/${requireHost}`;
  let http = servers.get(key);
  if (http === undefined) {
    http = server(record, {
      maxRequestLine: limits.maxStartLine,
      maxHeaderBytes: limits.maxHeaderBytes,
      maxHeaders: limits.maxHeaders,
      maxBodySize: limits.maxBodySize,
      maxChunkLine: limits.maxChunkLine,
      requireHost,
      // Nothing here may wait on a clock: every read is delivered at once.
      maxBufferedBody: 1 << 30,
    }) as EventHandler;
    servers.set(key, http);
  }
  return http;
}

const ERROR_BODY = /^(\d{3}) [^:]*: (.*)\n$/;

/** The status and reason of the server's error answer in `out`, if it sent one. */
function errorAnswer(out: Buffer): { status: number; reason: string } | null {
  const text = out.toString('latin1');
  for (let at = text.indexOf('HTTP/1.1 '); at !== -1; at = text.indexOf('HTTP/1.1 ', at + 1)) {
    const status = Number(text.slice(at + 9, at + 12));
    if (status < 400) continue;
    const headEnd = text.indexOf('\r\n\r\n', at);
    const m = ERROR_BODY.exec(text.slice(headEnd + 4));
    return { status, reason: m === null ? '' : m[2]! };
  }
  return null;
}

/**
 * Runs the real server over `input` delivered as `options.chunking` says (one in-memory read per chunk).
 * Never throws for any input unless the server itself throws (a bug the caller should report). Needs
 * `startServerDriver()` first.
 */
export function drive(input: Uint8Array, options: DriveOptions = {}): DriveResult {
  const loop = driverLoop;
  if (loop === null) throw new Error('startServerDriver() must run before drive()');
  const limits = { ...SERVER_LIMITS, ...options.limits };
  const whole = Buffer.isBuffer(input)
    ? input
    : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const pipe = loop.pipe(serverFor(limits, options.requireHost ?? false));
  const rec: Recording = {
    messages: [],
    pending: null,
    upgraded: false,
    delivered: 0,
    consumedAt: () => rec.delivered - pipe.conn.inboundBuffered,
  };
  recording = rec;
  let out: Buffer = EMPTY;
  let errorAt = 0;
  let closed = false;
  try {
    for (const chunk of splitInput(whole, options.chunking)) {
      if (pipe.ended || rec.upgraded) break;
      // The first unconsumed byte as this read begins: where an error it causes is reported.
      errorAt = Math.max(rec.delivered - pipe.conn.inboundBuffered, lastEnd(rec));
      rec.delivered += chunk.length;
      pipe.read(chunk);
      pipe.pump();
    }
    out = pipe.take() as Buffer;
    closed = pipe.ended;
  } finally {
    const consumed = rec.delivered - pipe.conn.inboundBuffered;
    pipe.dispose();
    recording = null;
    rec.delivered = consumed; // for the result below
  }
  const consumed = rec.delivered;
  const messages = rec.messages;
  const refused = errorAnswer(out);
  if (refused !== null) {
    const phase =
      rec.pending !== null ? 'body' : /body too large|expectation/.test(refused.reason) ? 'server' : 'head';
    // The first byte not consumed by a complete message (or by the refused message's head) as the read that
    // was refused began.
    const at = Math.max(errorAt, lastEnd(rec), rec.pending?.headEnd ?? 0);
    return {
      outcome: 'error',
      messages,
      error: { status: refused.status, reason: refused.reason, phase, at },
      incomplete: false,
      consumed: at,
    };
  }
  if (rec.upgraded) return { outcome: 'upgrade', messages, incomplete: false, consumed: lastEnd(rec) };
  if (closed) {
    // The server closed after a message: bytes after it are never read.
    const end = lastEnd(rec);
    return {
      outcome: end < whole.length && !onlyEmptyLines(whole, end) ? 'closed' : 'success',
      messages,
      incomplete: false,
      consumed: end,
    };
  }
  if (rec.pending !== null) {
    return { outcome: 'incomplete', messages, incomplete: true, consumed, pending: rec.pending };
  }
  const incomplete = !onlyEmptyLines(whole, consumed);
  return { outcome: incomplete ? 'incomplete' : 'success', messages, incomplete, consumed };
}

/** Where the last complete message ended (0 before any). */
function lastEnd(rec: Recording): number {
  const last = rec.messages[rec.messages.length - 1];
  return last === undefined ? 0 : last.end;
}

/**
 * Ways an unfinished input could go on: the end of a line, of a head or trailer section, of a request line
 * ("HTTP/1.1"), a field line.
 */
export const CONTINUATIONS: readonly string[] = [
  '\r\n\r\n',
  '\n\r\n',
  '\r\n\r\n\r\n\r\n',
  'x\r\n\r\n',
  ': x\r\n\r\n',
  'x: y\r\n\r\n',
  '0\r\n\r\n',
  '1\r\n\r\n',
  '.1\r\n\r\n',
  '1.1\r\n\r\n',
  'HTTP/1.1\r\n\r\n',
  ' HTTP/1.1\r\n\r\n',
  '/ HTTP/1.1\r\n\r\n',
  ' / HTTP/1.1\r\n\r\n',
];

/**
 * Whether an input that is 'incomplete' for us can never be accepted as it stands: no continuation in
 * CONTINUATIONS completes another message or gets a new head accepted, and at least one is refused. The head
 * parser judges a head (and the body decoder a trailer section) once it has ended, so an error llhttp reports
 * at the bad byte may wait for more bytes here; this tells such a deferred error from an input we could
 * still accept.
 */
export function refusedWhateverFollows(input: Buffer, ours: DriveResult): boolean {
  if (ours.outcome !== 'incomplete') return false;
  let refused = false;
  for (const more of CONTINUATIONS) {
    const r = drive(Buffer.concat([input, Buffer.from(more, 'latin1')]));
    if (r.messages.length > ours.messages.length) return false;
    if (ours.pending === undefined && r.pending !== undefined) return false;
    if (r.outcome === 'error') refused = true;
  }
  return refused;
}

/** The fields of a message the comparisons look at (drops offsets and flags). */
export function essentials(m: ParsedMessage): ParsedMessage {
  return {
    method: m.method,
    target: m.target,
    versionMajor: m.versionMajor,
    versionMinor: m.versionMinor,
    headers: m.headers,
    body: m.body,
    trailers: m.trailers,
  };
}
