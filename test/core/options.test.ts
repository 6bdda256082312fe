// Engine options: an option given as undefined means its default; bad values are refused by name.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_OPTIONS, type NetloomError, serve } from 'netloom';
import { serveInline } from '../helpers.ts';

test('an engine option given as undefined means its default', async () => {
  const engine = await serve(
    { onTraffic: (c) => c.write(c.next()) },
    {
      loops: 1,
      idleTimeout: undefined,
      highWaterMark: undefined,
      lingerTimeout: undefined,
      backlog: undefined,
    },
  );
  try {
    assert.equal(engine.options.idleTimeout, DEFAULT_OPTIONS.idleTimeout);
    assert.equal(engine.options.highWaterMark, DEFAULT_OPTIONS.highWaterMark);
    assert.equal(engine.options.lowWaterMark, DEFAULT_OPTIONS.lowWaterMark);
    assert.equal(engine.options.dialTimeout, DEFAULT_OPTIONS.dialTimeout);
  } finally {
    await engine.stop();
  }
});

test('bad engine options are refused with ERR_NETLOOM_OPTION naming the option', async () => {
  for (const [options, name] of [
    [{ idleTimeout: -1 }, 'idleTimeout'],
    [{ dialTimeout: 0 }, 'dialTimeout'],
    [{ loops: 1.5 }, 'loops'],
    [{ noDelay: 'yes' as unknown as boolean }, 'noDelay'],
  ] as const) {
    await assert.rejects(serve({}, { loops: 1, ...options }), (err: NetloomError) => {
      assert.equal(err.code, 'ERR_NETLOOM_OPTION');
      assert.match(err.message, new RegExp(name));
      return true;
    });
  }
});

test('a dial with a bad timeout is refused at the call', async () => {
  const { engine, loop } = await serveInline({});
  try {
    assert.throws(
      () => loop.dial('127.0.0.1:1', {}, { timeout: -5 }),
      (err: NetloomError) => err.code === 'ERR_NETLOOM_OPTION' && /timeout/.test(err.message),
    );
  } finally {
    await engine.stop();
  }
});
