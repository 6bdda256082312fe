// The reference gateway: node --conditions=netloom-source examples/gateway/main.ts [--config PATH]
//   [--cert FILE --key FILE]
// Starts demo user and video services, then the gateway from examples/gateway/gateway.yaml, and prints
// what to curl. With --cert and --key the first listener serves HTTPS with that certificate (watched, so a
// renewed file applies without a restart); the config's own `listeners[].tls` does the same, with SNI
// (`certificates`, `certificateDirectory`). SIGHUP reloads the configuration; SIGTERM or SIGINT drains and
// exits 0.
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type ConfigSource, FileConfigSource, loadConfigFile, startGateway } from 'netloom/gateway';
import { startServices } from './services.ts';

const { values } = parseArgs({
  options: {
    config: { type: 'string', default: fileURLToPath(new URL('./gateway.yaml', import.meta.url)) },
    'no-services': { type: 'boolean', default: false },
    /** Ship logs and access records to this file (NDJSON, zstd-compressed batches, rotated at 64 MiB). */
    'access-log': { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});
if ((values.cert === undefined) !== (values.key === undefined)) {
  console.error('--cert and --key go together');
  process.exit(2);
}

/** The config file, with --cert/--key put on its first listener at every read (so reloads keep them). */
function withTls(path: string, certFile: string, keyFile: string): ConfigSource {
  const file = new FileConfigSource(path);
  return {
    description: `${file.description} (HTTPS with ${certFile})`,
    directory: file.directory,
    async load() {
      const config = (await file.load()) as { listeners?: Record<string, unknown>[] };
      const first = config.listeners?.[0];
      if (first !== undefined) first.tls = { ...(first.tls as object), certFile, keyFile };
      return config;
    },
    watch: (onChange) => file.watch(onChange),
  };
}

const config = await loadConfigFile(values.config);
const services = values['no-services']
  ? []
  : await startServices(
      Object.entries(config.upstreams).flatMap(([name, u]) =>
        u.targets.map((t) => ({ name, port: Number(t.address.slice(t.address.lastIndexOf(':') + 1)) })),
      ),
    );

const accessLog = values['access-log'];
const gateway = await startGateway({
  source: values.cert === undefined ? values.config : withTls(values.config, values.cert, values.key!),
  ...(accessLog === undefined
    ? {}
    : { log: { sink: { type: 'file', path: accessLog }, compression: 'gzip' } }),
});
const base = `${values.cert === undefined && config.listeners[0]!.tls === undefined ? 'http' : 'https'}://${config.listeners[0]!.address}`;
console.log(`listening ${gateway.port()}`);
console.log(`netloom gateway (config version ${gateway.version}, ${values.config})
  try:
    curl -s ${base}/api/v1/user/42
    curl -s ${base}/api/v1/video/7            # weighted 2:1 over two instances
    curl -s -X POST --data 'hi' ${base}/api/v1/video/upload
    curl -s ${base}/healthz
    curl -s http://${config.admin?.address ?? '127.0.0.1:9901'}/upstreams   # admin: health and pools
  edit ${values.config} (or send SIGHUP) to reload; Ctrl-C to stop.`);

process.on('SIGHUP', () => {
  gateway
    .reload()
    .then((r) =>
      console.log(r.ok ? `reloaded: version ${r.version}` : `reload refused: ${r.problems.join('; ')}`),
    );
});
const stop = async () => {
  await gateway.stop(5000);
  await Promise.all(services.map((s) => s.stop({ deadline: 1000 })));
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
