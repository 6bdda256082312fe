// Review of the probes and spans with TLS on both sides: a TLS listener and an https:// target.
// - (guard) conn:open and conn:close fire once for each connection, TLS handshakes included.
// - the client span's server.address / server.port come from the target's address; an https:// target's
//   address keeps its scheme, and the span says server.address "https://127.0.0.1" (not a host).
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { after, test } from 'node:test';
import type { ConnCloseMessage, ConnOpenMessage } from 'netloom';
import { TestPki } from '../../tls/certs.ts';
import { gatewayConfig, sleep, startTestGateway, upstreamOf, waitUntil } from '../support.ts';

const pki = new TestPki();
after(() => pki.cleanup());
const front = pki.issue('front', ['gw.test', 'localhost']);
const back = pki.issue('back', ['backend.test', 'localhost', '127.0.0.1']);

async function httpsUpstream() {
  const server = https.createServer({ cert: back.cert, key: back.key }, (_req, res) => res.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path, servername: 'gw.test', ca: pki.ca.cert, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function tlsGateway(upPort: number, extra: Record<string, unknown> = {}) {
  const config = gatewayConfig(
    { app: upstreamOf([`https://localhost:${upPort}`], { tls: { caFile: pki.ca.certFile } }) },
    [{ name: 'a', match: { path: '/' }, upstream: 'app' }],
    extra,
  );
  (config.listeners as Record<string, unknown>[])[0]!.tls = {
    certFile: front.certFile,
    keyFile: front.keyFile,
  };
  return config;
}

test('conn:open and conn:close fire once per connection with TLS on both sides (guard)', async (t) => {
  const up = await httpsUpstream();
  t.after(() => up.close());
  const gw = await startTestGateway(tlsGateway(up.port));
  t.after(() => gw.stop());
  const opens = new Map<number, number>();
  const closes = new Map<number, number>();
  const onOpen = (m: unknown) => {
    const id = (m as ConnOpenMessage).conn.id;
    opens.set(id, (opens.get(id) ?? 0) + 1);
  };
  const onClose = (m: unknown) => {
    const id = (m as ConnCloseMessage).conn.id;
    closes.set(id, (closes.get(id) ?? 0) + 1);
  };
  diagnostics.subscribe('netloom:conn:open', onOpen);
  diagnostics.subscribe('netloom:conn:close', onClose);
  t.after(() => {
    diagnostics.unsubscribe('netloom:conn:open', onOpen);
    diagnostics.unsubscribe('netloom:conn:close', onClose);
  });
  for (let i = 0; i < 3; i++) assert.equal(await get(gw.port, `/x${i}`), 200);
  await gw.stop();
  await sleep(50);
  assert.ok(opens.size >= 4, `client connections and the pooled upstream one: ${opens.size}`);
  assert.deepEqual(
    [...opens.values()].filter((n) => n !== 1),
    [],
    'an open fired twice',
  );
  assert.deepEqual(
    [...opens.keys()].filter((id) => closes.get(id) !== 1),
    [],
    'every opened connection closed once',
  );
});

test('the client span of an https:// target names its host in server.address', async (t) => {
  const up = await httpsUpstream();
  const spans: {
    kind: number;
    attributes: { key: string; value: { stringValue?: string; intValue?: string } }[];
  }[] = [];
  const otlp = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d;
    });
    req.on('end', () => {
      const json = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: typeof spans }[] }[] };
      for (const rs of json.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      res.end('{}');
    });
  });
  await new Promise<void>((r) => otlp.listen(0, '127.0.0.1', r));
  t.after(() => Promise.all([up.close(), new Promise<void>((r) => otlp.close(() => r()))]));
  const endpoint = `http://127.0.0.1:${(otlp.address() as net.AddressInfo).port}/v1/traces`;
  const gw = await startTestGateway(
    tlsGateway(up.port, { observability: { tracing: { endpoint, batch: { maxDelay: 20 } } } }),
  );
  t.after(() => gw.stop());
  assert.equal(await get(gw.port, '/x'), 200);
  await waitUntil(() => spans.some((s) => s.kind === 3), 3000, 'the client span');
  const client = spans.find((s) => s.kind === 3)!;
  const attr = (k: string) => client.attributes.find((a) => a.key === k)?.value;
  assert.deepEqual(
    { address: attr('server.address')?.stringValue, port: attr('server.port')?.intValue },
    { address: 'localhost', port: String(up.port) },
  );
});
