// The fault stock filter (issue 15): aborts and delays by percentage or on a chosen header, switched at
// runtime through the admin endpoint (with its token) on every loop, across reloads.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  gatewayConfig,
  namedUpstream,
  pipelinedReplies,
  send,
  sendJson,
  startTestGateway,
  upstreamOf,
} from './support.ts';

const TOKEN = 'fault-admin-token-0123456789';

async function faultGateway(address: string, fault: Record<string, unknown>, loops = 1) {
  const config = gatewayConfig(
    { up: upstreamOf([address]) },
    [{ name: 'api', match: { path: '/' }, upstream: 'up', filters: [{ name: 'fault', ...fault }] }],
    { admin: { address: '127.0.0.1:0', token: TOKEN } },
  );
  config.listeners = [{ address: '127.0.0.1:0', loops }];
  return startTestGateway(config);
}

const auth = { authorization: `Bearer ${TOKEN}` };

describe('fault filter', () => {
  test('an abort of 30% answers about 30% of requests with its status; the rest reach the upstream', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await faultGateway(up.address, { abort: { status: 503, percent: 30 } });
    t.after(() => gw.stop());
    const replies = await pipelinedReplies(gw.port, new Array(4000).fill(''), 4, 200);
    const aborted = replies.filter((r) => r.status === 503).length;
    assert.ok(Math.abs(aborted / 4000 - 0.3) < 0.03, `${aborted} of 4000 aborted`);
    assert.equal(up.requests, 4000 - aborted);
    assert.deepEqual(JSON.parse(replies.find((r) => r.status === 503)!.body), {
      error: 'fault injected',
      status: 503,
      route: 'api',
    });
  });

  test('a delay on requests with x-fault: 1 only; the others are not held', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await faultGateway(up.address, {
      when: { header: 'x-fault', value: '1' },
      delay: { ms: 300 },
    });
    t.after(() => gw.stop());
    let at = Date.now();
    assert.equal((await send(gw.port, '/', { headers: { 'x-fault': '1' } })).status, 200);
    assert.ok(Date.now() - at >= 290, `held ${Date.now() - at} ms`);
    at = Date.now();
    assert.equal((await send(gw.port, '/', { headers: { 'x-fault': '0' } })).status, 200);
    assert.equal((await send(gw.port, '/')).status, 200);
    assert.ok(Date.now() - at < 250, `not held: ${Date.now() - at} ms`);
  });

  test('switched off and on at runtime on 2 loops (admin, with its token), and the switch outlives a reload', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await faultGateway(up.address, { abort: { status: 500, body: 'boom' } }, 2);
    t.after(() => gw.stop());
    const admin = gw.gateway.admin!.port;
    const statuses = async () =>
      (await pipelinedReplies(gw.port, new Array(40).fill(''), 8, 5)).map((r) => r.status);
    assert.ok((await statuses()).every((s) => s === 500));
    assert.equal((await send(admin, '/faults?route=api&switch=off', { method: 'POST' })).status, 401);
    const off = await sendJson<Record<string, string>>(admin, '/faults?route=api&switch=off', {
      method: 'POST',
      headers: auth,
    });
    assert.deepEqual(off.json, { api: 'off' });
    assert.ok((await statuses()).every((s) => s === 200));
    // A reload that keeps the route keeps the switch.
    await gw.source.set(
      gatewayConfig(
        { up: upstreamOf([up.address]) },
        [
          {
            name: 'api',
            match: { path: '/' },
            upstream: 'up',
            requestHeaders: { add: { 'x-reloaded': '1' } },
            filters: [{ name: 'fault', abort: { status: 500, body: 'boom' } }],
          },
        ],
        {
          admin: { address: '127.0.0.1:0', token: TOKEN },
          listeners: [{ address: '127.0.0.1:0', loops: 2 }],
        },
      ),
    );
    const reload = await gw.gateway.reload();
    assert.ok(reload.ok && reload.changed, JSON.stringify(reload));
    assert.ok((await statuses()).every((s) => s === 200));
    await sendJson(admin, '/faults?route=api&switch=config', { method: 'POST', headers: auth });
    assert.ok((await statuses()).every((s) => s === 500));
    assert.deepEqual((await sendJson(admin, '/faults', { headers: auth })).json, { api: 'config' });
    assert.equal(
      (await send(admin, '/faults?route=nope&switch=on', { method: 'POST', headers: auth })).status,
      404,
    );
    assert.equal(
      (await send(admin, '/faults?route=api&switch=maybe', { method: 'POST', headers: auth })).status,
      400,
    );
  });

  test('enabled: false in the configuration until the admin switches it on', async (t) => {
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const gw = await faultGateway(up.address, { enabled: false, abort: { status: 429 } });
    t.after(() => gw.stop());
    assert.equal((await send(gw.port, '/')).status, 200);
    await sendJson(gw.gateway.admin!.port, '/faults?route=api&switch=on', { method: 'POST', headers: auth });
    assert.equal((await send(gw.port, '/')).status, 429);
  });
});
