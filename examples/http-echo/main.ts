// HTTP echo server: node --conditions=netloom-source examples/http-echo/main.ts --port P [--loops N] [--no-require-host]
// Answers every accepted request with 200 application/json describing it. Prints "listening P" when ready.
import { parseArgs } from 'node:util';
import { serve } from 'netloom';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8081' },
    host: { type: 'string', default: '127.0.0.1' },
    loops: { type: 'string', default: '1' },
    'no-require-host': { type: 'boolean', default: false },
  },
});

const engine = await serve(new URL('./handler.ts', import.meta.url), {
  address: `tcp://${values.host}:${values.port}`,
  loops: values.loops === 'auto' ? 'auto' : Number(values.loops),
  data: { requireHost: !values['no-require-host'] },
});
console.log(`listening ${engine.port}`);

const stop = () => {
  engine.stop().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
