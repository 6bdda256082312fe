// WebSocket live room: node --conditions=netloom-source examples/ws-broadcast/main.ts --port P [--loops N]
// [--host H]. Every WebSocket to ws://HOST:P/ joins one room and hears every other member's messages; prints "listening P" once every loop
// listens; SIGTERM or SIGINT drains and exits 0.
import { parseArgs } from 'node:util';
import { serve } from 'netloom';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '9001' },
    host: { type: 'string', default: '127.0.0.1' },
    loops: { type: 'string', default: '1' },
  },
});

const engine = await serve(new URL('./handler.ts', import.meta.url), {
  address: `tcp://${values.host}:${values.port}`,
  loops: values.loops === 'auto' ? 'auto' : Number(values.loops),
});
console.log(`listening ${engine.port}`);

const stop = () => {
  engine.stop().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
