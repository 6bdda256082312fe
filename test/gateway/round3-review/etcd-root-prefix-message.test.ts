// Round-3 review of 4f0b951 (etcd prefixes must end in "/"): the check also refused "/" (a length test),
// with the message for a prefix without the slash ('ends in "/" (got "/")... siblings such as "/-other/"'),
// which "/" does end in and has none of. "/" (the whole keyspace) is accepted now; one without the slash
// is still refused with that message.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EtcdConfigSource } from 'netloom/gateway';

test('round3-review: "/" is an etcd prefix like any other ending in "/"; "/netloom" is refused', () => {
  assert.doesNotThrow(() => new EtcdConfigSource({ endpoints: ['http://127.0.0.1:2379'], prefix: '/' }));
  assert.throws(
    () => new EtcdConfigSource({ endpoints: ['http://127.0.0.1:2379'], prefix: '/netloom' }),
    /an etcd prefix ends in "\/" \(got "\/netloom"\)/,
  );
});
