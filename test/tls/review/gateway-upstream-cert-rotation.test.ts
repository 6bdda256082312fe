// The gateway's upstream TLS files (client certificate, CA) are read once, when a target is first made
// (gateway/tls-config.ts dialTls), and the target key is the JSON of the *paths*: a renewed client
// certificate written over the same files (cert-manager, Vault agent) is never picked up, neither by a file
// watch (listener certificates have one) nor by gateway.reload(). The gateway keeps presenting the old
// certificate until it restarts (an expired one means every request 502s).
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import https from 'node:https';
import type net from 'node:net';
import { after, test } from 'node:test';
import { echoHandler, gatewayConfig, send, startTestGateway, upstreamOf } from '../../gateway/support.ts';
import { TestPki } from '../certs.ts';

const pki = new TestPki();
const other = new TestPki('another CA');
after(() => {
  pki.cleanup();
  other.cleanup();
});
const back = pki.issue('back', ['backend.test']);
const oldClient = pki.issue('old-client', ['netloom-gateway'], { client: true }); // from a CA the upstream does not trust
const newClient = other.issue('new-client', ['netloom-gateway'], { client: true }); // from the CA it trusts
const live = pki.issue('live-client', ['netloom-gateway'], { client: true }); // the files the gateway names
copyFileSync(oldClient.certFile, live.certFile);
copyFileSync(oldClient.keyFile, live.keyFile);

test('a renewed upstream client certificate (same files) is used after gateway.reload()', async (t) => {
  const server = https.createServer(
    { cert: back.cert, key: back.key, requestCert: true, rejectUnauthorized: true, ca: other.ca.cert },
    echoHandler('up'),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;
  const config = gatewayConfig(
    {
      app: upstreamOf([`https://127.0.0.1:${port}`], {
        tls: {
          caFile: pki.ca.certFile,
          servername: 'backend.test',
          certFile: live.certFile,
          keyFile: live.keyFile,
        },
        retries: 0,
      }),
    },
    [{ name: 'all', match: { path: '/' }, upstream: 'app' }],
  );
  const gw = await startTestGateway(config);
  t.after(() => gw.stop());
  assert.equal((await send(gw.port, '/')).status, 502, 'the old certificate is refused by the upstream');
  // The renewal lands on the same paths; the operator reloads the gateway to be sure.
  copyFileSync(newClient.certFile, live.certFile);
  copyFileSync(newClient.keyFile, live.keyFile);
  gw.source.set(structuredClone(config));
  const result = await gw.gateway.reload();
  assert.equal(result.ok, true, JSON.stringify(result));
  // Control: a gateway started now, from the same configuration, is accepted by the upstream.
  const fresh = await startTestGateway(structuredClone(config));
  t.after(() => fresh.stop());
  assert.equal(
    (await send(fresh.port, '/')).status,
    200,
    'control: a fresh gateway presents the new certificate',
  );
  const after = await send(gw.port, '/');
  assert.equal(after.status, 200, 'the renewed client certificate is presented after the reload');
});
