/** Reason phrases of the status codes netloom sends, and status lines cached as strings. */
export const STATUS_TEXT: Readonly<Record<number, string>> = {
  100: 'Continue',
  101: 'Switching Protocols',
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  206: 'Partial Content',
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  304: 'Not Modified',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  410: 'Gone',
  411: 'Length Required',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable',
  417: 'Expectation Failed',
  421: 'Misdirected Request',
  422: 'Unprocessable Content',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

const lines = new Map<number, string>();
/** Status lines as bytes, indexed by code (100-999): an array load on every response, not a map lookup. */
const lineBytes: (Buffer | undefined)[] = [];

/** {@link statusLine} as bytes, built once per code. */
export function statusLineBytes(code: number): Buffer {
  let bytes = lineBytes[code];
  if (bytes === undefined) {
    bytes = Buffer.from(statusLine(code), 'latin1');
    lineBytes[code] = bytes;
  }
  return bytes;
}

/** "HTTP/1.1 <code> <reason>\r\n", built once per code. */
export function statusLine(code: number): string {
  let line = lines.get(code);
  if (line === undefined) {
    line = `HTTP/1.1 ${code} ${STATUS_TEXT[code] ?? ''}\r\n`;
    lines.set(code, line);
  }
  return line;
}

let dateLine = '';
let dateBytes = Buffer.alloc(0);
let dateTimer: NodeJS.Timeout | null = null;
/** Status line and date line together, per code, for the current second (one copy into a head, not two). */
let headStarts: (string | undefined)[] = [];

function refreshDate(): void {
  dateLine = `date: ${new Date().toUTCString()}\r\n`;
  dateBytes = Buffer.from(dateLine, 'latin1');
  headStarts = [];
}

/** `HTTP/1.1 <code> <reason>\r\ndate: <now>\r\n`, the start of a response head, rebuilt once a second. */
export function statusAndDate(code: number): string {
  if (dateTimer === null) currentDateLine();
  let start = headStarts[code];
  if (start === undefined) {
    start = statusLine(code) + dateLine;
    headStarts[code] = start;
  }
  return start;
}

/** {@link currentDateLine} as bytes. */
export function currentDateBytes(): Buffer {
  if (dateTimer === null) currentDateLine();
  return dateBytes;
}

/** The `date:` header line, rebuilt once a second (IMF-fixdate, RFC 9110 §5.6.7). */
export function currentDateLine(): string {
  if (dateTimer === null) {
    refreshDate();
    // Align to the second so the header turns over with the clock.
    const align = setTimeout(
      () => {
        refreshDate();
        dateTimer = setInterval(refreshDate, 1000);
        dateTimer.unref();
      },
      1000 - (Date.now() % 1000),
    );
    align.unref();
    dateTimer = align;
  }
  return dateLine;
}
