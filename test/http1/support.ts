// Helpers for HTTP/1.1 server tests: an inline server on one loop, and raw-socket exchanges.
import net from 'node:net';
import { type EngineOptions, serve } from 'netloom';
import { type RequestHandler, type ServerOptions, server } from 'netloom/http1';

export async function startHttp(
  handler: RequestHandler,
  options: ServerOptions = {},
  engine: EngineOptions = {},
) {
  const e = await serve(server(handler, options), { loops: 1, ...engine });
  return { engine: e, port: e.port, url: `http://127.0.0.1:${e.port}` };
}

export interface RawResult {
  /** Everything the server sent, as latin1 text. */
  text: string;
  /** Whether the server closed the connection before the wait ended. */
  closed: boolean;
}

/**
 * Sends `bytes` (a string is latin1) on a fresh connection and collects the answer until the server closes
 * or `waitMs` pass with no new bytes.
 */
export function raw(
  port: number,
  bytes: string | Buffer | (string | Buffer)[],
  waitMs = 300,
): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.setNoDelay(true);
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout;
    const done = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => done(false), waitMs);
    };
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      arm();
    });
    s.on('close', () => done(true));
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') done(true);
      else reject(err);
    });
    s.on('connect', async () => {
      const parts = Array.isArray(bytes) ? bytes : [bytes];
      for (const part of parts) {
        s.write(typeof part === 'string' ? Buffer.from(part, 'latin1') : part);
        if (parts.length > 1) await new Promise((r) => setTimeout(r, 20));
      }
      arm();
    });
  });
}

export interface ParsedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Splits a text of one or more responses with Content-Length bodies (enough for these tests). */
export function responses(text: string): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) throw new Error(`no end of head in ${JSON.stringify(rest.slice(0, 200))}`);
    const lines = rest.slice(0, end).split('\r\n');
    const status = Number(lines[0]!.split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    rest = rest.slice(end + 4);
    let body = '';
    if (status === 100) {
      out.push({ status, headers, body });
      continue;
    }
    if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = rest.slice(0, n);
      rest = rest.slice(n);
    } else if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const lineEnd = rest.indexOf('\r\n');
        const size = Number.parseInt(rest.slice(0, lineEnd), 16);
        rest = rest.slice(lineEnd + 2);
        if (size === 0) {
          rest = rest.slice(rest.indexOf('\r\n') + 2);
          break;
        }
        body += rest.slice(0, size);
        rest = rest.slice(size + 2);
      }
    } else {
      body = rest;
      rest = '';
    }
    out.push({ status, headers, body });
  }
  return out;
}

/** A request head with Host. */
export function get(path = '/', extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: test\r\n${extra}\r\n`;
}

/** A client's script: bytes to write, pauses (ms) between them, and 'FIN' to half-close. */
export type ScriptPart = string | Buffer | number | 'FIN';

export interface ScriptResult {
  text: string;
  /** The server ended the connection (FIN or reset) before `waitMs`. */
  closed: boolean;
  /** Milliseconds from the connect to the server's close (or to `waitMs`). */
  elapsed: number;
}

/** Plays `parts` over a fresh half-open-capable connection and collects the answer for up to `waitMs`. */
export function script(port: number, parts: ScriptPart[], waitMs: number): Promise<ScriptResult> {
  return new Promise((resolve) => {
    const started = Date.now();
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    s.setNoDelay(true);
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed, elapsed: Date.now() - started });
    };
    const timer = setTimeout(() => done(false), waitMs);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => done(true));
    s.on('close', () => done(true));
    s.on('error', () => done(true));
    s.on('connect', async () => {
      for (const p of parts) {
        if (typeof p === 'number') await new Promise((r) => setTimeout(r, p));
        else if (p === 'FIN') s.end();
        else s.write(typeof p === 'string' ? Buffer.from(p, 'latin1') : p);
      }
    });
  });
}
