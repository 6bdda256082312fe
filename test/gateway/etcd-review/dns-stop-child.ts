// Child process of discovery-dns-stop.test.ts: a gateway with DNS discovery against a resolver that never
// answers; stops it, then prints how long the process lived on after stop() resolved.
import dgram from 'node:dgram';
import { StaticConfigSource, startGateway } from 'netloom/gateway';

const sock = dgram.createSocket('udp4');
await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
sock.on('message', () => {}); // a resolver that is down (no answer)
const server = `127.0.0.1:${sock.address().port}`;
const gw = await startGateway({
  watch: false,
  source: new StaticConfigSource({
    listeners: [{ address: '127.0.0.1:0', loops: 1 }],
    upstreams: { users: { discovery: { dns: { name: 'users.example', type: 'SRV', server } } } },
    routes: [{ name: 'u', match: { path: '/' }, upstream: 'users' }],
  }),
});
await new Promise((r) => setTimeout(r, 200)); // the first query is in flight
const stopped = Date.now();
await gw.stop();
sock.close();
process.on('exit', () => process.stdout.write(`lived ${Date.now() - stopped} ms after stop\n`));
