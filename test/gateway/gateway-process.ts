// `netloom-gateway` as a child process for tests that need several gateways or the CLI: started with
// `args`, resolved once it printed what `ready` matches, stopped with SIGTERM (SIGKILL after `grace` ms).
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = join(ROOT, 'bin/netloom-gateway.js');

export interface RunningProcess {
  readonly child: ChildProcess;
  /** What it printed so far (stdout and stderr). */
  output(): string;
  stop(): Promise<void>;
}

const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((r) => c.once('exit', () => r()));

export async function runGateway(
  args: string[],
  ready: RegExp = /listening on/,
  grace = 7000,
): Promise<RunningProcess> {
  const child = spawn(process.execPath, ['--conditions=netloom-source', BIN, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const collect = (d: Buffer) => {
    out += d;
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the gateway did not start: ${out}`));
    }, 20_000);
    const check = () => {
      if (!ready.test(out)) return;
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.off('exit', early);
      resolve();
    };
    const early = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited (${code}): ${out}`));
    };
    child.stdout!.on('data', check);
    child.once('exit', early);
  });
  return {
    child,
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), grace);
      await exited(child);
      clearTimeout(timer);
    },
  };
}
