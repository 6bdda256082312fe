// Review of the diagnostics_channel probes: a subscriber that tracks requests (start, then finish or abort)
// or connections (open, then close) must see every end paired with its start, once. Several exchanges
// break the pairing: a WebSocket upgrade starts and never ends, an answer that closes the connection before
// the request body was read never ends, the server's own refusals (413, a bad head) end requests that never
// started, and a dial that fails closes a connection that never opened.
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import net from 'node:net';
import { test } from 'node:test';
import type { ConnCloseMessage, ConnOpenMessage } from 'netloom';
import type { RequestAbortMessage, RequestStartMessage, ResponseFinishMessage } from 'netloom/http1';
import { WebSocket, WebSocketServer } from 'ws';
import {
  deadAddress,
  gatewayConfig,
  httpUpstream,
  send,
  sleep,
  startTestGateway,
  upstreamOf,
} from '../support.ts';
import { stopServer } from '../websocket-support.ts';

/** Request probes, per request object: how many starts and ends (finish or abort) each saw. */
function trackRequests() {
  const requests = new Map<unknown, { start: number; end: number; path: string }>();
  const entry = (req: unknown, path: string) => {
    let e = requests.get(req);
    if (e === undefined) {
      e = { start: 0, end: 0, path };
      requests.set(req, e);
    }
    return e;
  };
  const onStart = (m: unknown) => {
    const req = (m as RequestStartMessage).request;
    entry(req, req.path).start++;
  };
  const onEnd = (m: unknown) => {
    const req = (m as ResponseFinishMessage | RequestAbortMessage).request;
    entry(req, '(no start)').end++;
  };
  diagnostics.subscribe('netloom:http1:request:start', onStart);
  diagnostics.subscribe('netloom:http1:response:finish', onEnd);
  diagnostics.subscribe('netloom:http1:request:abort', onEnd);
  return {
    /** Requests whose starts and ends do not pair up one to one. */
    unpaired: () =>
      [...requests.values()]
        .filter((e) => e.start !== 1 || e.end !== 1)
        .map((e) => `${e.path} start ${e.start} end ${e.end}`),
    clear: () => requests.clear(),
    off: () => {
      diagnostics.unsubscribe('netloom:http1:request:start', onStart);
      diagnostics.unsubscribe('netloom:http1:response:finish', onEnd);
      diagnostics.unsubscribe('netloom:http1:request:abort', onEnd);
    },
  };
}

/** Writes `bytes` on a fresh connection; resolves with what came back once the server closes it (or 2 s). */
function exchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(buf);
    }, 2000);
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(buf);
    });
    s.write(bytes);
  });
}

test('a WebSocket upgrade through the gateway ends the request it started', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  wss.on('connection', (ws) => ws.on('message', (d) => ws.send(d)));
  t.after(() => stopServer(wss));
  const address = `127.0.0.1:${(wss.address() as net.AddressInfo).port}`;
  const gw = await startTestGateway(
    gatewayConfig({ app: upstreamOf([address]) }, [
      { name: 'ws', match: { path: '/' }, upstream: 'app', websocket: { enabled: true } },
    ]),
  );
  t.after(() => gw.stop());
  const probes = trackRequests();
  t.after(() => probes.off());
  const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/chat`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send('hello');
  await new Promise((resolve) => ws.once('message', resolve));
  ws.close();
  await new Promise((resolve) => ws.once('close', resolve));
  await sleep(100);
  assert.deepEqual(
    probes.unpaired(),
    [],
    'the upgraded request got neither response:finish nor request:abort',
  );
});

test('an answer that closes the connection before the body was read ends its request', async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig({ app: upstreamOf([up.address]) }, [
      { name: 'api', match: { path: '/api' }, upstream: 'app' },
    ]),
  );
  t.after(() => gw.stop());
  const probes = trackRequests();
  t.after(() => probes.off());
  // No route: answered 404 at once; the 10 MB body is not coming, so the connection closes with the answer.
  const reply = await exchange(
    gw.port,
    'POST /nowhere HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\n\r\n',
  );
  assert.match(reply, /^HTTP\/1\.1 404 /);
  await sleep(50);
  assert.deepEqual(probes.unpaired(), [], 'the 404 went out whole, and no finish (or abort) was published');
});

test("the server's own refusals end only requests that started, once", async (t) => {
  const up = await httpUpstream((_req, res) => res.end('ok'));
  t.after(() => up.close());
  const gw = await startTestGateway(
    gatewayConfig(
      { app: upstreamOf([up.address]) },
      [{ name: 'api', match: { path: '/' }, upstream: 'app' }],
      {
        http: { maxBodySize: 1000 },
      },
    ),
  );
  t.after(() => gw.stop());
  const probes = trackRequests();
  t.after(() => probes.off());
  // A declared body over maxBodySize: 413 before the handler.
  assert.match(
    await exchange(gw.port, 'POST /big HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n'),
    /^HTTP\/1\.1 413 /,
  );
  // A head that does not parse: 400.
  assert.match(await exchange(gw.port, 'GET /\x01 HTTP/1.1\r\nhost: x\r\n\r\n'), /^HTTP\/1\.1 400 /);
  await sleep(50);
  assert.deepEqual(probes.unpaired(), [], 'ends (abort and finish) published for requests never started');
});

test('a dial that fails publishes no conn:close for a connection that never opened', async (t) => {
  const dead = await deadAddress();
  const gw = await startTestGateway(
    gatewayConfig({ gone: upstreamOf([dead], { retries: 0 }) }, [
      { name: 'down', match: { path: '/' }, upstream: 'gone' },
    ]),
  );
  t.after(() => gw.stop());
  const opened = new Set<number>();
  const closedUnopened: number[] = [];
  const onOpen = (m: unknown) => opened.add((m as ConnOpenMessage).conn.id);
  const onClose = (m: unknown) => {
    const id = (m as ConnCloseMessage).conn.id;
    if (!opened.delete(id)) closedUnopened.push(id);
  };
  diagnostics.subscribe('netloom:conn:open', onOpen);
  diagnostics.subscribe('netloom:conn:close', onClose);
  t.after(() => {
    diagnostics.unsubscribe('netloom:conn:open', onOpen);
    diagnostics.unsubscribe('netloom:conn:close', onClose);
  });
  assert.equal((await send(gw.port, '/x')).status, 502);
  await sleep(100);
  // The client's connection opened and closed; the dial to the dead target never opened.
  assert.deepEqual(
    closedUnopened,
    [],
    'conn:close for connections that had no conn:open (open - close goes negative)',
  );
});
