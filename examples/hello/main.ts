// HTTP hello server: node --conditions=netloom-source examples/hello/main.ts --port P --loops N [--host H]
//   [--keep-alive-timeout MS] [--cert FILE --key FILE]   (HTTPS with a PEM certificate and key; watched)
// Prints "listening P" once every loop listens; SIGTERM or SIGINT drains and exits 0.
import { parseArgs } from 'node:util';
import { serve } from 'netloom';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    loops: { type: 'string', default: '1' },
    'keep-alive-timeout': { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
  },
});
if ((values.cert === undefined) !== (values.key === undefined)) {
  console.error('--cert and --key go together');
  process.exit(2);
}
const keepAlive = values['keep-alive-timeout'];

const engine = await serve(new URL('./handler.ts', import.meta.url), {
  address: `tcp://${values.host}:${values.port}`,
  loops: values.loops === 'auto' ? 'auto' : Number(values.loops),
  data: { keepAliveTimeout: keepAlive === undefined ? undefined : Number(keepAlive) },
  tls:
    values.cert === undefined
      ? undefined
      : { certFile: values.cert, keyFile: values.key, alpnProtocols: ['h2', 'http/1.1'] },
});
console.log(`listening ${engine.port}`);

const stop = () => {
  engine.stop().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
