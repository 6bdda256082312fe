// Review of the fault admin endpoints: route names that are Object.prototype keys.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayConfig, namedUpstream, send, sendJson, startTestGateway, upstreamOf } from '../support.ts';

const TOKEN = 'fault-admin-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };

describe('fault admin review', { timeout: 20_000 }, () => {
  test('POST /faults for a route that does not exist but is an Object.prototype key answers 404', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const config = gatewayConfig(
      { up: upstreamOf([up.address]) },
      [
        {
          name: 'api',
          match: { path: '/' },
          upstream: 'up',
          filters: [{ name: 'fault', abort: { status: 503 } }],
        },
        // A route named toString without any fault filter.
        { name: 'toString', match: { path: '/t' }, upstream: 'up' },
      ],
      { admin: { address: '127.0.0.1:0', token: TOKEN } },
    );
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    const admin = gw.gateway.admin!.port;
    for (const name of ['toString', 'constructor', 'hasOwnProperty', '__proto__']) {
      const r = await send(admin, `/faults?route=${encodeURIComponent(name)}&switch=on`, {
        method: 'POST',
        headers: auth,
      });
      assert.equal(r.status, 404, `route=${name}: ${r.status} ${r.text}`);
    }
    assert.deepEqual((await sendJson(admin, '/faults', { headers: auth })).json, { api: 'config' });
  });

  test('a route named __proto__ with a fault filter is listed by GET /faults', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const config = gatewayConfig(
      { up: upstreamOf([up.address]) },
      [
        {
          name: '__proto__',
          match: { path: '/' },
          upstream: 'up',
          filters: [{ name: 'fault', abort: { status: 503 } }],
        },
      ],
      { admin: { address: '127.0.0.1:0', token: TOKEN } },
    );
    const gw = await startTestGateway(config);
    t.after(() => gw.stop());
    const admin = gw.gateway.admin!.port;
    assert.equal((await send(gw.port, '/')).status, 503);
    const listed = await send(admin, '/faults', { headers: auth });
    assert.equal(listed.text, '{"__proto__":"config"}');
  });
});
