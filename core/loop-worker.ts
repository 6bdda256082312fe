/**
 * Entry point of a loop's worker thread: builds the loop, imports the handler module, listens, and obeys the
 * engine's messages. Nothing here is public.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { parseAddress } from './address.ts';
import { importHandler, type WorkerInit, type WorkerMessage } from './engine.ts';
import { EventLoop } from './loop.ts';
import { useIoPath } from './node-internals.ts';
import type { ResolvedTls } from './tls/options.ts';

const init = workerData as WorkerInit;
// The main thread verified the I/O path; this thread's own modules (the HTTP codec's strings) follow it.
useIoPath(init.io);
const port = parentPort!;
const post = (msg: WorkerMessage) => port.postMessage(msg);

const loop = new EventLoop({
  index: init.index,
  loops: init.loops,
  options: init.options,
  statsBuffer: init.statsBuffer,
  metricsBuffer: init.metricsBuffer,
  engineId: init.engineId,
  requestShutdown: () => post({ type: 'shutdown' }),
  io: init.io,
  tlsKeys: init.tlsKeys,
});

let booted: Promise<boolean> = (async () => {
  try {
    await loop.boot(await importHandler(init.handlerModule));
    post({ type: 'ready', port: await loop.listen(parseAddress(init.options.address), init.port) });
    return true;
  } catch (error) {
    post({ type: 'boot-failed', error });
    return false;
  }
})();

type EngineMessage =
  | { type: 'stop'; deadline: number }
  | { type: 'tls-reload'; id: number }
  | { type: 'tls-update'; id: number; tls: ResolvedTls };

port.on('message', async (msg: EngineMessage) => {
  if (msg.type === 'tls-reload' || msg.type === 'tls-update') {
    let problems: string[] = [];
    if (await booted)
      problems = await (msg.type === 'tls-reload' ? loop.reloadCertificates() : loop.updateTls(msg.tls));
    post({ type: 'tls-reloaded', id: msg.id, problems });
    return;
  }
  if (msg.type !== 'stop') return;
  const ok = await booted;
  booted = Promise.resolve(false);
  if (ok) await loop.stop(msg.deadline);
  post({ type: 'stopped' });
  port.close();
});

// A failed boot leaves nothing to run: let the thread end.
void booted.then((ok) => {
  if (!ok) port.close();
});
