/** Log levels, most severe first. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** Structured fields attached to a log record. */
export type LogFields = Readonly<Record<string, unknown>>;

/** An access-log record, as the HTTP codec fills it. */
export interface AccessRecord {
  method: string;
  path: string;
  status: number;
  /** Response body bytes. */
  bytes: number;
  /** Milliseconds from the request head to the response end. */
  duration: number;
  remote: string;
  traceId?: string | undefined;
  requestId?: string | undefined;
  route?: string | undefined;
  domain?: string | undefined;
}

/**
 * The logger each loop exposes as `loop.log`. The engine's default writes lines to stderr; the log ring
 * (core/log-ring.ts) provides one that never blocks the loop.
 */
export interface Logger {
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  /** An access-log record; `key` makes sampling deterministic for that key (loggers without a ring omit it). */
  access?(record: AccessRecord, key?: string): void;
}

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** A plain stderr logger: one JSON line per record at or above `level`. */
export function stderrLogger(loop: number, level: LogLevel = 'info'): Logger {
  const max = RANK[level];
  const emit = (lvl: LogLevel, message: string, fields?: LogFields) => {
    if (RANK[lvl] > max) return;
    const record = { time: new Date().toISOString(), level: lvl, loop, message, ...fields };
    process.stderr.write(`${JSON.stringify(record, errorReplacer)}\n`);
  };
  return {
    error: (m, f) => emit('error', m, f),
    warn: (m, f) => emit('warn', m, f),
    info: (m, f) => emit('info', m, f),
    debug: (m, f) => emit('debug', m, f),
  };
}

/** JSON replacer that keeps an Error's name, message, code and stack instead of `{}`. */
export function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const { code } = value as { code?: unknown };
    return { name: value.name, message: value.message, code, stack: value.stack };
  }
  return value;
}
