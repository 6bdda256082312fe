// Review: the `redis.url` check accepts any redis:// URL with a host. ioredis also reads options from the
// query string (`?password=...`, `?db=...`, `?path=...`), and takes any path as the db; the breaker's logs
// strip only the URL's userinfo password, so a password given as `?password=` is printed in the clear
// with every "rate-limit Redis call failed" / "breaker opened" line. And a db that is not a number is
// accepted by the configuration check.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateConfig } from 'netloom/gateway';
import { gatewayProcess } from '../redis-support.ts';
import { deadAddress, gatewayConfig, namedUpstream, send, upstreamOf, waitUntil } from '../support.ts';

function limited(up: string, url: string) {
  return gatewayConfig({ up: upstreamOf([up]) }, [
    {
      name: 'api',
      match: { path: '/' },
      upstream: 'up',
      filters: [
        {
          name: 'rate-limit',
          limits: [{ algorithm: 'token-bucket', rate: 10 }],
          redis: { url, timeout: 100, breaker: { failures: 1, openTime: 100 } },
        },
      ],
    },
  ]);
}

describe('the redis URL', { timeout: 30_000 }, () => {
  test('a password in the URL query string is refused; one in the userinfo does not reach the logs', async (t) => {
    assert.throws(
      () => validateConfig(limited('127.0.0.1:1', 'redis://127.0.0.1:6379/?password=s3cret-Pa55')),
      (e: { problems: string[] }) => /redis\.url/.test(e.problems.join('\n')),
    );
    const up = await namedUpstream('ok');
    t.after(() => up.close());
    const dead = await deadAddress();
    const gw = await gatewayProcess(limited(up.address, `redis://:s3cret-Pa55@${dead}/0`), 1);
    t.after(() => gw.stop());
    await waitUntil(
      async () => {
        await send(gw.port, '/');
        return gw.output().includes('rate-limit Redis');
      },
      10_000,
      'a Redis failure logged',
    );
    const lines = gw
      .output()
      .split('\n')
      .filter((l) => l.includes('rate-limit Redis'));
    assert.ok(!gw.output().includes('s3cret-Pa55'), `logged: ${lines.join('\n')}`);
  });

  test('a db that is not a number is a configuration error', () => {
    const problems = (url: string) => {
      try {
        validateConfig(limited('127.0.0.1:1', url));
      } catch (e) {
        return (e as { problems: string[] }).problems.join('\n');
      }
      return 'accepted';
    };
    // ioredis parses the db with parseInt: "zero" is NaN, no SELECT is sent, the limits land in db 0.
    const answer = problems('redis://127.0.0.1:6379/zero');
    assert.notEqual(answer, 'accepted', 'redis://127.0.0.1:6379/zero was accepted');
    assert.match(answer, /redis\.url/);
  });
});
