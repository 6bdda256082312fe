// A producer thread of the logring workload: logs realistic access records as fast as it can for a while,
// through netloom's ring or through pino with a thread-stream transport, and reports count and latency.
import { parentPort, workerData } from 'node:worker_threads';
import { RingLogger } from 'netloom';
import pino from 'pino';

const { mode, ring, file, seconds, index } = workerData as {
  mode: 'netloom' | 'pino';
  ring?: SharedArrayBuffer;
  file?: string;
  seconds: number;
  index: number;
};

const METHODS = ['GET', 'GET', 'GET', 'POST', 'PUT', 'DELETE'];
const PATHS = ['/api/v1/user/', '/api/v1/video/', '/api/v1/live/', '/static/app.js', '/api/v1/search?q='];
const STATUS = [200, 200, 200, 200, 201, 204, 304, 404, 500];
const hex = (n: number, len: number) => n.toString(16).padStart(len, '0').slice(-len);

function record(i: number) {
  return {
    method: METHODS[i % METHODS.length]!,
    path: `${PATHS[i % PATHS.length]}${i % 9973}`,
    status: STATUS[i % STATUS.length]!,
    bytes: (i * 7919) % 65536,
    duration: ((i * 31) % 5000) / 10,
    remote: `10.0.${(i >> 8) & 255}.${i & 255}`,
    traceId: `${hex(i * 2654435761, 16)}${hex(index * 40503 + i, 16)}`,
    requestId: `${hex(i, 8)}-${hex(index, 4)}-4${hex(i * 7, 3)}-a${hex(i * 13, 3)}-${hex(i * 31337, 12)}`,
    route: 'user-api',
    domain: 'user',
  };
}

const latencies: number[] = [];
let count = 0;
const until = performance.now() + seconds * 1000;

if (mode === 'netloom') {
  const log = new RingLogger(ring!, index);
  while (performance.now() < until) {
    for (let k = 0; k < 256; k++, count++) {
      const r = record(count);
      if ((count & 63) === 0) {
        const t = performance.now();
        log.access(r);
        latencies.push(performance.now() - t);
      } else {
        log.access(r);
      }
    }
  }
  parentPort!.postMessage({ count, latencies });
} else {
  const transport = pino.transport({ target: 'pino/file', options: { destination: file, mkdir: true } });
  const log = pino({ base: null, timestamp: pino.stdTimeFunctions.epochTime }, transport);
  while (performance.now() < until) {
    for (let k = 0; k < 256; k++, count++) {
      const r = record(count);
      if ((count & 63) === 0) {
        const t = performance.now();
        log.info(r);
        latencies.push(performance.now() - t);
      } else {
        log.info(r);
      }
    }
  }
  // Report first; the thread then stays alive until the transport has flushed everything to the file.
  parentPort!.postMessage({ count, latencies });
  transport.end();
}
