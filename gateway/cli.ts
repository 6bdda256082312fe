/**
 * The `netloom-gateway` command:
 *
 *   netloom-gateway --config gateway.yaml [--plugins ./filters.ts ...] [--access-log FILE] [--check]
 *   netloom-gateway --etcd URL[,URL...] (--etcd-key KEY | --etcd-prefix PREFIX) [--cache FILE] [...]
 *   netloom-gateway config push FILE --etcd URL[,URL...] (--etcd-key KEY | --etcd-prefix PREFIX)
 *                   [--expect-revision N] [--plugins ...]
 *
 * With `--etcd` the configuration comes from etcd and is watched there (gateway/config-etcd.ts), with the
 * last applied one kept in `--cache` for starts while etcd is down. `config push` validates a file and
 * stores it in etcd with compare-and-swap on `--expect-revision` (gateway/config-push.ts): exit 0 with the
 * revision written, 1 with the problems or the conflict.
 *
 * Starts the gateway from a configuration file (JSON or YAML) with the plugins it names and those given
 * here; `--check` validates the configuration (filter settings included) and exits 0, or 1 with every
 * problem. The file is watched and reloaded on change and on SIGHUP; SIGTERM or SIGINT drains the
 * listeners (5 s at most) and exits 0.
 */
import { parseArgs } from 'node:util';
import { checkPrefix } from './config-etcd.ts';
import {
  ConfigError,
  type ConfigSource,
  EtcdConfigSource,
  loadConfig,
  pushConfig,
  startGateway,
} from './index.ts';

const USAGE = [
  'usage: netloom-gateway --config FILE [--plugins MODULE ...] [--access-log FILE] [--check]',
  '       netloom-gateway --etcd URL[,URL] (--etcd-key KEY | --etcd-prefix PREFIX) [--cache FILE] [--plugins ...]',
  '       netloom-gateway config push FILE --etcd URL[,URL] (--etcd-key KEY | --etcd-prefix PREFIX) [--expect-revision N]',
].join('\n');

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

let values: {
  config?: string;
  plugins?: string[];
  'access-log'?: string;
  check?: boolean;
  help?: boolean;
  etcd?: string;
  'etcd-key'?: string;
  'etcd-prefix'?: string;
  cache?: string;
  'expect-revision'?: string;
};
let positionals: string[];
try {
  ({ values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      plugins: { type: 'string', multiple: true },
      'access-log': { type: 'string' },
      check: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      etcd: { type: 'string' },
      'etcd-key': { type: 'string' },
      'etcd-prefix': { type: 'string' },
      cache: { type: 'string' },
      'expect-revision': { type: 'string' },
    },
  }));
} catch (err) {
  fail(`${(err as Error).message}\n${USAGE}`);
}
if (values.help === true) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const plugins = values.plugins ?? [];
const endpoints = values.etcd?.split(',').filter(Boolean);
if (endpoints !== undefined && (values['etcd-key'] === undefined) === (values['etcd-prefix'] === undefined))
  fail(`--etcd takes --etcd-key or --etcd-prefix\n${USAGE}`);
if (values['etcd-prefix'] !== undefined)
  try {
    checkPrefix(values['etcd-prefix']);
  } catch (err) {
    fail((err as Error).message);
  }

if (positionals[0] === 'config' && positionals[1] === 'push') {
  const file = positionals[2];
  if (file === undefined || endpoints === undefined) fail(USAGE);
  const expect = values['expect-revision'];
  if (expect !== undefined && !/^\d+$/.test(expect)) fail('--expect-revision takes a revision number');
  try {
    const { revision } = await pushConfig(file, {
      endpoints,
      key: values['etcd-key'],
      prefix: values['etcd-prefix'],
      plugins,
      ...(expect === undefined ? {} : { expectRevision: Number(expect) }),
    });
    process.stdout.write(`${file}: stored at revision ${revision}\n`);
    process.exit(0);
  } catch (err) {
    fail(err instanceof ConfigError ? err.message : `${file}: ${(err as Error).message}`);
  }
}
if (positionals.length > 0) fail(`unknown command ${positionals.join(' ')}\n${USAGE}`);
if ((values.config === undefined) === (endpoints === undefined)) fail(USAGE);
const source: string | ConfigSource =
  endpoints === undefined
    ? values.config!
    : new EtcdConfigSource({
        endpoints,
        key: values['etcd-key'],
        prefix: values['etcd-prefix'],
        cacheFile: values.cache,
        directory: process.cwd(),
      });

if (values.check === true) {
  if (values.config === undefined) fail('--check takes --config FILE');
  try {
    const { plugins: loaded } = await loadConfig(values.config, plugins);
    process.stdout.write(
      `${values.config}: valid (${loaded.length} plugin module${loaded.length === 1 ? '' : 's'})\n`,
    );
    process.exit(0);
  } catch (err) {
    fail(err instanceof ConfigError ? err.message : `${values.config}: ${(err as Error).message}`);
  }
}

// A signal while the gateway starts stops it as soon as it is up (the default action would exit 143 and
// leave the loops' listeners to the process's end).
let signalled = false;
const early = () => {
  signalled = true;
};
process.on('SIGTERM', early);
process.on('SIGINT', early);
let gateway: Awaited<ReturnType<typeof startGateway>>;
try {
  const accessLog = values['access-log'];
  gateway = await startGateway({
    source,
    plugins,
    ...(accessLog === undefined
      ? {}
      : { log: { sink: { type: 'file', path: accessLog }, compression: 'gzip' } }),
  });
} catch (err) {
  fail(
    err instanceof ConfigError ? err.message : `netloom gateway failed to start: ${(err as Error).message}`,
  );
}

/** An engine's address as a user would type it, with the port it got. */
const shown = (e: { address: string; port: number }) =>
  e.address.replace(/^tcp:\/\//, '').replace(/:0$/, `:${e.port}`);
const addresses = gateway.listeners.map(shown).join(', ');
process.stdout.write(`netloom gateway: version ${gateway.version} listening on ${addresses}\n`);
if (gateway.admin !== null) process.stdout.write(`netloom gateway: admin on ${shown(gateway.admin)}\n`);

process.on('SIGHUP', () => {
  void gateway.reload().then((r) => {
    process.stdout.write(
      r.ok
        ? `netloom gateway: version ${r.version}\n`
        : `netloom gateway: reload refused: ${r.problems.join('; ')}\n`,
    );
  });
});
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  // Exits once drained, and at the latest shortly after the deadline whatever still holds the process.
  setTimeout(() => process.exit(0), 6000).unref();
  gateway.stop(5000).then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`netloom gateway: stop failed: ${err.message}\n`);
      process.exit(1);
    },
  );
};
process.off('SIGTERM', early);
process.off('SIGINT', early);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (signalled) stop();
