// An Autobahn-style conformance run against examples/ws-echo: the cases of the Autobahn testsuite's
// fuzzingclient (sections 1-7, 9 light, 12 and 13), written with raw sockets (ws-conformance-client.ts)
// because wstest cannot be installed here. Each case checks what RFC 6455 / RFC 7692 and Autobahn expect,
// strictly: an echo with the same opcode and payload, a pong with the ping's payload, a close with the
// exact code followed by the server closing TCP, invalid UTF-8 failing fast (1007 before the message is
// over). Cases marked [extra] are not Autobahn's but check the same rules.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { after, afterEach, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import {
  chop,
  closePayload,
  deflate,
  fragments,
  frame,
  OP,
  RSV1,
  WsClient,
} from './ws-conformance-client.ts';

const main = fileURLToPath(new URL('../../examples/ws-echo/main.ts', import.meta.url));

let child: ChildProcess;
let port = 0;

before(async () => {
  child = spawn(
    process.execPath,
    [...process.execArgv.filter((a) => a.startsWith('--conditions')), main, '--port', '0'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const match = /^listening (\d+)\n$/.exec(line.toString());
  assert.ok(match, `unexpected first line: ${line}`);
  port = Number(match[1]);
});

after(async () => {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
});

const clients = new Set<WsClient>();
afterEach(() => {
  for (const c of clients) c.destroy();
  clients.clear();
});

async function open(extensions?: string): Promise<WsClient> {
  const c = await WsClient.connect(port, extensions);
  clients.add(c);
  return c;
}

/** The case table: a name like Autobahn's and what the case does; one test() each, in order. */
const cases: [name: string, run: () => Promise<void>][] = [];
const add = (name: string, run: () => Promise<void>) => {
  cases.push([name, run]);
};

const hex = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');
/** Autobahn's RSV numbering: 1 is RSV3 (0x10), 4 is RSV1 (0x40). */
const rsv = (n: number) => n << 4;

/** Deterministic bytes that do not compress. */
function noise(n: number, seed = 0x9e3779b9): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed | 0;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** One message echoed with its opcode and payload, then the client's clean close. */
async function echoes(
  opcode: number,
  payload: Buffer | string,
  send: (c: WsClient, bytes: Buffer) => Promise<void> = async (c, bytes) => c.send(bytes),
) {
  const c = await open();
  await send(c, frame(opcode, payload));
  await c.expectMessage(opcode, payload, 5_000);
  await c.closeNormally();
}

/** `bytes` (one write) fail the connection with `code`: the server's close frame, then it closes TCP. */
async function fails(code: number, ...bytes: Buffer[]) {
  const c = await open();
  c.send(...bytes);
  await c.expectClose(code);
}

// ---- 1 Framing -------------------------------------------------------------------------------------

const SIZES = [0, 125, 126, 127, 128, 65_535, 65_536];
SIZES.forEach((n, i) => {
  add(`1.1.${i + 1} text, ${n} bytes`, () => echoes(OP.TEXT, '*'.repeat(n)));
});
add('1.1.8 text, 65536 bytes, in chops of 997 octets', () =>
  echoes(OP.TEXT, '*'.repeat(65_536), (c, b) => c.sendChopped(b, 997)),
);
SIZES.forEach((n, i) => {
  add(`1.2.${i + 1} binary, ${n} bytes`, () => echoes(OP.BINARY, Buffer.alloc(n, 0xfe)));
});
add('1.2.8 binary, 65536 bytes, in chops of 997 octets', () =>
  echoes(OP.BINARY, Buffer.alloc(65_536, 0xfe), (c, b) => c.sendChopped(b, 997)),
);
add('1.2.9 binary, 16 MiB, in 4096 TCP writes of 4 KiB [extra, cf. 9.2.6]', () =>
  echoes(OP.BINARY, noise(16 << 20), (c, b) => c.sendChopped(b, 4096, 0)),
);
add('1.3.1 unmasked client frame -> 1002 [extra, RFC 6455 §5.1]', () =>
  fails(1002, frame(OP.TEXT, 'Hello', { mask: false })),
);

// ---- 2 Pings/Pongs ---------------------------------------------------------------------------------

/** `pings` (one write, or in chops of `chops` octets) each answered by a pong with its payload, in order. */
async function pongs(pings: Buffer[], chops?: number) {
  const c = await open();
  const bytes = Buffer.concat(pings.map((p) => frame(OP.PING, p)));
  if (chops === undefined) c.send(bytes);
  else await c.sendChopped(bytes, chops);
  for (const p of pings) await c.expectFrame(OP.PONG, p);
  await c.closeNormally();
}

const TEN = Array.from({ length: 10 }, (_, i) => Buffer.from(`payload-${i}`));
add('2.1 ping, empty payload -> pong', () => pongs([Buffer.alloc(0)]));
add('2.2 ping, small text payload -> pong', () => pongs([Buffer.from('Hello, world!')]));
add('2.3 ping, small binary payload -> pong', () => pongs([hex('00ff fefd fcfb 00ff')]));
add('2.4 ping, 125-byte binary payload -> pong', () => pongs([Buffer.alloc(125, 0xfe)]));
add('2.5 ping, 126-byte payload -> 1002', () => fails(1002, frame(OP.PING, Buffer.alloc(126, 0xfe))));
add('2.6 ping, 125-byte payload in chops of 1 octet -> pong', () => pongs([Buffer.alloc(125, 0xfe)], 1));
for (const [id, payload] of [
  ['2.7', ''],
  ['2.8', 'unsolicited pong payload'],
] as const)
  add(`${id} unsolicited pong${payload === '' ? ', empty' : ' with payload'} -> ignored`, async () => {
    const c = await open();
    c.send(frame(OP.PONG, payload));
    await c.closeNormally(); // the close's answer is the first frame: nothing answered the pong
  });
add('2.9 unsolicited pong, then ping -> only the ping is answered', async () => {
  const c = await open();
  c.send(frame(OP.PONG, 'unsolicited pong payload'), frame(OP.PING, 'ping payload'));
  await c.expectFrame(OP.PONG, 'ping payload');
  await c.closeNormally();
});
add('2.10 10 pings -> 10 pongs, in order', () => pongs(TEN));
add('2.11 10 pings in chops of 1 octet -> 10 pongs, in order', () => pongs(TEN, 1));

// ---- 3 Reserved bits -------------------------------------------------------------------------------

add('3.1 text with RSV = 1 -> 1002', () => fails(1002, frame(OP.TEXT, 'Hello, world!', { rsv: rsv(1) })));
/** A text echoed, then `bad`, then a ping: the echo arrives, then 1002, and no pong. */
async function echoThenFails(bad: Buffer, how: 'one write' | 'frame by frame' | 'octet by octet') {
  const c = await open();
  const bytes = [frame(OP.TEXT, 'Hello, world!'), bad, frame(OP.PING, 'Hello, world!')];
  if (how === 'one write') c.send(...bytes);
  else if (how === 'frame by frame') await c.sendSlowly(bytes);
  else await c.sendChopped(Buffer.concat(bytes), 1);
  await c.expectMessage(OP.TEXT, 'Hello, world!');
  await c.expectClose(1002);
}
add('3.2 text, text with RSV = 2, ping -> echo, then 1002', () =>
  echoThenFails(frame(OP.TEXT, 'Hello, world!', { rsv: rsv(2) }), 'one write'),
);
add('3.3 text, text with RSV = 3, ping, frame by frame -> echo, then 1002', () =>
  echoThenFails(frame(OP.TEXT, 'Hello, world!', { rsv: rsv(3) }), 'frame by frame'),
);
add('3.4 text, text with RSV = 4, ping, octet by octet -> echo, then 1002', () =>
  echoThenFails(frame(OP.TEXT, 'Hello, world!', { rsv: rsv(4) }), 'octet by octet'),
);
add('3.5 binary with RSV = 5 -> 1002', () =>
  fails(1002, frame(OP.BINARY, hex('00ff fefd fcfb 00ff'), { rsv: rsv(5) })),
);
add('3.6 ping with RSV = 6 -> 1002', () => fails(1002, frame(OP.PING, 'Hello, world!', { rsv: rsv(6) })));
add('3.7 close with RSV = 7 -> 1002', () =>
  fails(1002, frame(OP.CLOSE, closePayload(1000), { rsv: rsv(7) })),
);

// ---- 4 Opcodes -------------------------------------------------------------------------------------

for (const [group, codes] of [
  ['4.1', [3, 4, 5, 6, 7]],
  ['4.2', [11, 12, 13, 14, 15]],
] as const) {
  const [a, b, c, d, e] = codes;
  add(`${group}.1 reserved opcode ${a} -> 1002`, () => fails(1002, frame(a, '')));
  add(`${group}.2 reserved opcode ${b} with payload -> 1002`, () =>
    fails(1002, frame(b, 'reserved opcode payload')),
  );
  add(`${group}.3 text, reserved opcode ${c}, ping -> echo, then 1002`, () =>
    echoThenFails(frame(c, ''), 'one write'),
  );
  add(`${group}.4 text, reserved opcode ${d} with payload, ping -> echo, then 1002`, () =>
    echoThenFails(frame(d, 'reserved opcode payload'), 'one write'),
  );
  add(`${group}.5 text, reserved opcode ${e} with payload, ping, octet by octet -> echo, then 1002`, () =>
    echoThenFails(frame(e, 'reserved opcode payload'), 'octet by octet'),
  );
}

// ---- 5 Fragmentation -------------------------------------------------------------------------------

const F1 = Buffer.from('fragment1');
const F2 = Buffer.from('fragment2');
add('5.1 ping in 2 fragments -> 1002', () =>
  fails(1002, frame(OP.PING, F1, { fin: false }), frame(OP.CONTINUATION, F2)),
);
add('5.2 pong in 2 fragments -> 1002', () =>
  fails(1002, frame(OP.PONG, F1, { fin: false }), frame(OP.CONTINUATION, F2)),
);

type Sending = 'one write' | 'frame by frame' | 'octet by octet';
async function sendAs(c: WsClient, bytes: Buffer[], how: Sending) {
  if (how === 'one write') c.send(...bytes);
  else if (how === 'frame by frame') await c.sendSlowly(bytes);
  else await c.sendChopped(Buffer.concat(bytes), 1);
}
const SENDINGS: Sending[] = ['one write', 'frame by frame', 'octet by octet'];

SENDINGS.forEach((how, i) => {
  add(`5.${3 + i} text in 2 fragments, ${how} -> one echo`, async () => {
    const c = await open();
    await sendAs(c, fragments(OP.TEXT, [F1, F2]), how);
    await c.expectMessage(OP.TEXT, 'fragment1fragment2');
    await c.closeNormally();
  });
});
SENDINGS.forEach((how, i) => {
  add(`5.${6 + i} text in 2 fragments with a ping between, ${how} -> pong, then echo`, async () => {
    const c = await open();
    const [a, b] = fragments(OP.TEXT, [F1, F2]) as [Buffer, Buffer];
    await sendAs(c, [a, frame(OP.PING, 'pongme 2!'), b], how);
    await c.expectFrame(OP.PONG, 'pongme 2!');
    await c.expectMessage(OP.TEXT, 'fragment1fragment2');
    await c.closeNormally();
  });
});
SENDINGS.forEach((how, i) => {
  add(`5.${9 + i} continuation (FIN) with nothing to continue, then text, ${how} -> 1002`, async () => {
    const c = await open();
    await sendAs(
      c,
      [frame(OP.CONTINUATION, 'non-continuation payload'), frame(OP.TEXT, 'Hello, world!')],
      how,
    );
    await c.expectClose(1002);
  });
});
SENDINGS.forEach((how, i) => {
  add(`5.${12 + i} continuation (no FIN) with nothing to continue, then text, ${how} -> 1002`, async () => {
    const c = await open();
    await sendAs(
      c,
      [frame(OP.CONTINUATION, 'non-continuation payload', { fin: false }), frame(OP.TEXT, 'Hello, world!')],
      how,
    );
    await c.expectClose(1002);
  });
});
add(
  '5.15 text in 2 fragments, then continuation, text (no FIN), continuation -> echo, then 1002',
  async () => {
    const c = await open();
    c.send(
      ...fragments(OP.TEXT, [F1, F2]),
      frame(OP.CONTINUATION, 'fragment3', { fin: false }),
      frame(OP.TEXT, 'fragment4', { fin: false }),
      frame(OP.CONTINUATION, 'fragment5'),
    );
    await c.expectMessage(OP.TEXT, 'fragment1fragment2');
    await c.expectClose(1002);
  },
);
for (const [id, fin] of [
  ['5.16', false],
  ['5.17', true],
] as const)
  add(`${id} twice: continuation (${fin ? '' : 'no '}FIN), text (no FIN), continuation -> 1002`, () => {
    const three = () => [
      frame(OP.CONTINUATION, 'fragment1', { fin }),
      frame(OP.TEXT, 'fragment2', { fin: false }),
      frame(OP.CONTINUATION, 'fragment3'),
    ];
    return fails(1002, ...three(), ...three());
  });
add('5.18 text (no FIN), then a new text (FIN) inside the fragmented message -> 1002', () =>
  fails(1002, frame(OP.TEXT, F1, { fin: false }), frame(OP.TEXT, F2)),
);
for (const [id, how] of [
  ['5.19', 'frame by frame'],
  ['5.20', 'octet by octet'],
] as const)
  add(`${id} text in 5 fragments with 2 pings between, ${how} -> 2 pongs, then echo`, async () => {
    const c = await open();
    const parts = ['fragment1', 'fragment2', 'fragment3', 'fragment4', 'fragment5'].map((s) =>
      Buffer.from(s),
    );
    const [a, b, c3, d, e] = fragments(OP.TEXT, parts) as [Buffer, Buffer, Buffer, Buffer, Buffer];
    await sendAs(c, [a, b, frame(OP.PING, 'pongme 1!'), c3, d, frame(OP.PING, 'pongme 2!'), e], how);
    await c.expectFrame(OP.PONG, 'pongme 1!');
    await c.expectFrame(OP.PONG, 'pongme 2!');
    await c.expectMessage(OP.TEXT, 'fragment1fragment2fragment3fragment4fragment5');
    await c.closeNormally();
  });
add('5.21 text in 1000 fragments of 1 byte -> one echo [extra]', async () => {
  const c = await open();
  const text = Buffer.from('0123456789'.repeat(100));
  c.send(...fragments(OP.TEXT, chop(text, 1)));
  await c.expectMessage(OP.TEXT, text);
  await c.closeNormally();
});
add('5.22 binary, 65536 bytes in 256 fragments -> one echo [extra]', async () => {
  const c = await open();
  const data = noise(65_536);
  c.send(...fragments(OP.BINARY, chop(data, 256)));
  await c.expectMessage(OP.BINARY, data);
  await c.closeNormally();
});
add('5.23 text in 2 fragments with an unsolicited pong between -> echo only [extra]', async () => {
  const c = await open();
  const [a, b] = fragments(OP.TEXT, [F1, F2]) as [Buffer, Buffer];
  c.send(a, frame(OP.PONG, 'unsolicited'), b);
  await c.expectMessage(OP.TEXT, 'fragment1fragment2');
  await c.closeNormally();
});

// ---- 6 UTF-8 handling ------------------------------------------------------------------------------

/** Each of `messages` echoed, in order, then a clean close. */
async function echoAll(opcode: number, messages: Buffer[], frames: Buffer[]) {
  const c = await open();
  c.send(...frames);
  for (const m of messages) await c.expectMessage(opcode, m);
  await c.closeNormally();
}

add('6.1.1 text, 0 bytes', () => echoes(OP.TEXT, ''));
add('6.1.2 text in 3 empty fragments', () =>
  echoAll(
    OP.TEXT,
    [Buffer.alloc(0)],
    fragments(OP.TEXT, [Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0)]),
  ),
);
add('6.1.3 text in 3 fragments, first and last empty', () => {
  const mid = Buffer.from('middle frame payload');
  return echoAll(OP.TEXT, [mid], fragments(OP.TEXT, [Buffer.alloc(0), mid, Buffer.alloc(0)]));
});
const HELLO = Buffer.from('Hello-µ@ßöäüàá-UTF-8!!');
const KOSME = hex('cebae1bdb9cf83cebcceb5');
add('6.2.1 valid UTF-8 text, one frame', () => echoes(OP.TEXT, HELLO));
add('6.2.2 valid UTF-8 text in 2 fragments, split at a code point', () =>
  echoAll(OP.TEXT, [HELLO], fragments(OP.TEXT, [HELLO.subarray(0, 12), HELLO.subarray(12)])),
);
add('6.2.3 valid UTF-8 text in fragments of 1 octet', () =>
  echoAll(OP.TEXT, [HELLO], fragments(OP.TEXT, chop(HELLO, 1))),
);
add('6.2.4 valid UTF-8 text (κόσμε) in fragments of 1 octet', () =>
  echoAll(OP.TEXT, [KOSME], fragments(OP.TEXT, chop(KOSME, 1))),
);
/** 1- to 4-octet sequences, U+FFFF (a noncharacter, valid), U+10FFFF. */
const MULTI = Buffer.from('a\u00e9\u20ac\u{1d11e}\uffff\u{10ffff}κόσμε\u{1f600}z');
add('6.2.5 text with 4-octet sequences and U+FFFF, in 2 fragments split at every octet [extra]', () =>
  echoAll(
    OP.TEXT,
    Array.from({ length: MULTI.length + 1 }, () => MULTI),
    Array.from({ length: MULTI.length + 1 }, (_, i) =>
      fragments(OP.TEXT, [MULTI.subarray(0, i), MULTI.subarray(i)]),
    ).flat(),
  ),
);
add('6.2.6 text with 4-octet sequences and U+FFFF, in fragments of 1 octet [extra]', () =>
  echoAll(OP.TEXT, [MULTI], fragments(OP.TEXT, chop(MULTI, 1))),
);
const BAD = Buffer.concat([KOSME, hex('eda080'), Buffer.from('edited')]);
add('6.3.1 invalid UTF-8 text (a surrogate), one frame -> 1007', () => fails(1007, frame(OP.TEXT, BAD)));
add('6.3.2 invalid UTF-8 text (a surrogate), fragments of 1 octet -> 1007', () =>
  fails(1007, ...fragments(OP.TEXT, chop(BAD, 1))),
);

// 6.4: fail fast. The message is KOSME, then U+110000 written as UTF-8 would (f4 90 80 80), then "edited".
const FAST = Buffer.concat([KOSME, hex('f4908080'), Buffer.from('edited')]);
// Autobahn's cuts: 6.4.1 and 6.4.3 at 11 and 15 (the 2nd part is the whole bad code point), 6.4.2 and
// 6.4.4 at 12 and 13 (the 2nd part is the one octet that makes the text invalid).
for (const [id, cut1, cut2, what] of [
  ['6.4.1', 11, 15, 'the invalid code point in the 2nd of 3 fragments'],
  ['6.4.2', 12, 13, 'the 2nd of 3 fragments being the octet that makes the text invalid'],
] as const)
  add(`${id} fail fast: ${what} -> 1007 before the 3rd`, async () => {
    const c = await open();
    c.send(frame(OP.TEXT, FAST.subarray(0, cut1), { fin: false }), frame(OP.PING, 'still open?'));
    await c.expectFrame(OP.PONG, 'still open?'); // the valid first fragment is accepted
    c.send(frame(OP.CONTINUATION, FAST.subarray(cut1, cut2), { fin: false }));
    await c.expectClose(1007); // the 3rd fragment is never sent
  });
for (const [id, cut1, cut2, what] of [
  ['6.4.3', 11, 15, 'the invalid code point in the 2nd of 3 chops of one frame'],
  ['6.4.4', 12, 13, 'the 2nd of 3 chops of one frame being the octet that makes the text invalid'],
] as const)
  add(`${id} fail fast: ${what} -> 1007 before the 3rd`, async () => {
    const c = await open();
    const bytes = frame(OP.TEXT, FAST);
    const head = bytes.length - FAST.length; // 2 octets and the mask key
    c.send(bytes.subarray(0, head + cut1));
    await c.expectSilence(100); // the valid first chop is accepted
    c.send(bytes.subarray(head + cut1, head + cut2));
    await c.expectClose(1007); // the 3rd chop is never sent
  });
add('6.4.5 fail fast: invalid UTF-8 in the first fragment -> 1007 before the final one [extra]', async () => {
  const c = await open();
  c.send(frame(OP.TEXT, Buffer.concat([KOSME, hex('c0af'), Buffer.from('more')]), { fin: false }));
  await c.expectClose(1007);
});

// 6.5-6.23: Autobahn's UTF-8 sequences (test/fixtures/autobahn), each sent in one frame and, on a second
// connection, in fragments of 1 octet: valid ones echoed both times, invalid ones closed with 1007.
const sequences = JSON.parse(
  readFileSync(new URL('../fixtures/autobahn/utf8-sequences.json', import.meta.url), 'utf8'),
) as { category: string; valid: boolean; hex: string }[];
const categories: string[] = [];
const inCategory = new Map<string, number>();
for (const s of sequences) {
  if (!categories.includes(s.category)) categories.push(s.category);
  const j = (inCategory.get(s.category) ?? 0) + 1;
  inCategory.set(s.category, j);
  const bytes = Buffer.from(s.hex, 'hex');
  const shown = s.hex.length > 32 ? `${s.hex.slice(0, 32)}…` : s.hex;
  const id = `6.${categories.indexOf(s.category) + 5}.${j}`;
  add(
    `${id} ${s.valid ? 'valid' : 'invalid'} UTF-8 ${shown} (${s.category})${s.valid ? '' : ' -> 1007'}`,
    async () => {
      if (s.valid) {
        await echoAll(
          OP.TEXT,
          [bytes, bytes],
          [frame(OP.TEXT, bytes), ...fragments(OP.TEXT, chop(bytes, 1))],
        );
      } else {
        await fails(1007, frame(OP.TEXT, bytes));
        await fails(1007, ...fragments(OP.TEXT, chop(bytes, 1)));
      }
    },
  );
}

// ---- 7 Close handling ------------------------------------------------------------------------------

add('7.1.1 text echoed, then a clean close', async () => {
  const c = await open();
  c.send(frame(OP.TEXT, 'Hello World!'));
  await c.expectMessage(OP.TEXT, 'Hello World!');
  await c.closeNormally();
});
add('7.1.2 close twice -> one close answered, TCP closed', async () => {
  const c = await open();
  c.send(frame(OP.CLOSE, closePayload(1000)), frame(OP.CLOSE, closePayload(1000)));
  await c.expectClose(1000);
});
add('7.1.3 close, then ping -> no pong', async () => {
  const c = await open();
  c.send(frame(OP.CLOSE, closePayload(1000)), frame(OP.PING, 'Hello World!'));
  await c.expectClose(1000);
});
add('7.1.4 close, then text -> not echoed', async () => {
  const c = await open();
  c.send(frame(OP.CLOSE, closePayload(1000)), frame(OP.TEXT, 'Hello World!'));
  await c.expectClose(1000);
});
add('7.1.5 text fragment, close, continuation -> close only', async () => {
  const c = await open();
  c.send(frame(OP.TEXT, F1, { fin: false }), frame(OP.CLOSE, closePayload(1000)), frame(OP.CONTINUATION, F2));
  await c.expectClose(1000);
});
add('7.1.6 256 KiB text, close, ping -> (the echo,) close, no pong', async () => {
  const c = await open();
  const big = 'BAsd7&jh23'.repeat(26_215).slice(0, 262_144);
  c.send(frame(OP.TEXT, big), frame(OP.CLOSE, closePayload(1000)), frame(OP.PING, 'Hello World!'));
  await c.expectMessage(OP.TEXT, big); // whole before the close, so echoed (Autobahn: "echo perhaps")
  await c.expectClose(1000);
});
add('7.3.1 close without payload -> close (no status or 1000), TCP closed', async () => {
  const c = await open();
  c.sendClose();
  await c.expectClose(null);
});
add('7.3.2 close with a 1-octet payload -> 1002', () => fails(1002, frame(OP.CLOSE, 'a')));
add('7.3.3 close 1000 -> close 1000', async () => {
  const c = await open();
  await c.closeNormally(1000);
});
add('7.3.4 close 1000 with a reason -> close 1000', async () => {
  const c = await open();
  c.sendClose(1000, 'Hello World!');
  await c.expectClose(1000);
});
add('7.3.5 close 1000 with a 123-octet reason -> close 1000', async () => {
  const c = await open();
  c.sendClose(1000, '*'.repeat(123));
  await c.expectClose(1000);
});
add('7.3.6 close 1000 with a 124-octet reason (a 126-octet control frame) -> 1002', () =>
  fails(1002, frame(OP.CLOSE, closePayload(1000, '*'.repeat(124)))),
);
add('7.5.1 close with an invalid UTF-8 reason -> 1007', () =>
  fails(1007, frame(OP.CLOSE, closePayload(1000, BAD))),
);
[1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999].forEach((code, i) => {
  add(`7.7.${i + 1} close with valid code ${code} -> echoed`, async () => {
    const c = await open();
    await c.closeNormally(code);
  });
});
[0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 1015].forEach((code, i) => {
  add(`7.9.${i + 1} close with invalid code ${code} -> 1002${i === 9 ? ' [extra]' : ''}`, () =>
    fails(1002, frame(OP.CLOSE, closePayload(code))),
  );
});
add('7.13.1 close with code 5000 -> 1002', () => fails(1002, frame(OP.CLOSE, closePayload(5000))));
add('7.13.2 close with code 65535 -> 1002', () => fails(1002, frame(OP.CLOSE, closePayload(65_535))));

// ---- 9 Limits/performance (light) ------------------------------------------------------------------

for (const [id, opcode, name] of [
  ['9.7.5', OP.TEXT, 'text'],
  ['9.8.5', OP.BINARY, 'binary'],
] as const)
  add(`${id} 1000 ${name} messages of 1 KiB, pipelined in one write -> all echoed in order`, () => {
    const messages = Array.from({ length: 1000 }, (_, i) =>
      opcode === OP.TEXT ? Buffer.from(`${i}`.padStart(4, '0').repeat(256)) : noise(1024, i + 1),
    );
    return echoAll(
      opcode,
      messages,
      messages.map((m) => frame(opcode, m)),
    );
  });

// ---- 12 / 13 permessage-deflate (RFC 7692) ---------------------------------------------------------

/** Autobahn's message sizes and auto-fragment sizes (case12_x_x.py), fewer messages each. */
const PMD_SIZES: [size: number, fragment: number][] = [
  [16, 0],
  [64, 0],
  [256, 0],
  [1024, 0],
  [4096, 0],
  [8192, 0],
  [16_384, 0],
  [32_768, 0],
  [65_536, 0],
  [131_072, 0],
  [8192, 256],
  [16_384, 256],
  [32_768, 256],
  [65_536, 256],
  [131_072, 256],
  [131_072, 1024],
  [131_072, 4096],
  [131_072, 32_768],
];

/** Compressible text like Autobahn's JSON data file (ASCII, so any slice is UTF-8). */
const JSON_DATA = Buffer.from(
  JSON.stringify(
    Array.from({ length: 4000 }, (_, i) => ({
      id: i,
      name: `user-${(i * 7919) % 1000}`,
      tags: ['alpha', 'beta', 'gamma'].slice(0, (i % 3) + 1),
      score: ((i * 31) % 97) / 97,
    })),
  ),
);
/** Compressible binary like Autobahn's bitmap: gradients with a little noise. */
const BITMAP = Buffer.from(noise(262_144).map((n, i) => (((i >> 9) + (i & 511)) & 0xff) ^ (n & 3)));

/** `count` slices of `data`, `size` octets each, taken in turn (as Autobahn's sendOne does). */
function slices(data: Buffer, size: number, count: number): Buffer[] {
  return Array.from({ length: count }, (_, k) => {
    const from = (k * size) % data.length;
    return Buffer.concat([data, data]).subarray(from, from + size);
  });
}

/** Messages sent compressed (if agreed) with `offer`, each echoed with the same payload. */
async function compressedEchoes(
  offer: string,
  opcode: number,
  size: number,
  fragment: number,
  mustAccept = true,
) {
  const c = await open(offer);
  if (mustAccept) assert.ok(c.deflate !== null, `permessage-deflate declined for the offer "${offer}"`);
  const data = opcode === OP.TEXT ? JSON_DATA : BITMAP;
  const messages = slices(data, size, Math.max(4, Math.min(100, Math.floor((1 << 20) / size))));
  c.send(...messages.flatMap((m) => c.messageFrames(opcode, m, fragment === 0 ? {} : { fragment })));
  for (const m of messages) await c.expectMessage(opcode, m, 5_000);
  await c.closeNormally();
}

/** Autobahn's default offer (PerMessageDeflateOffer()). */
const DEFAULT_OFFER = 'permessage-deflate; client_no_context_takeover; client_max_window_bits';
for (const [group, opcode, what] of [
  ['12.1', OP.TEXT, 'text (JSON)'],
  ['12.2', OP.BINARY, 'binary (bitmap)'],
] as const)
  PMD_SIZES.forEach(([size, fragment], i) => {
    add(
      `${group}.${i + 1} compressed ${what}, ${size} bytes${fragment === 0 ? '' : `, fragments of ${fragment}`}, default offer`,
      () => compressedEchoes(DEFAULT_OFFER, opcode, size, fragment),
    );
  });

// Autobahn 13.x offers: PerMessageDeflateOffer(requestNoContextTakeover, requestMaxWindowBits), which ask
// for server_no_context_takeover and server_max_window_bits. An 8-bit server window is one zlib cannot
// compress with, so declining it is a valid answer (then the messages go uncompressed).
const OFFERS_13: [offer: string, mustAccept: boolean][] = [
  [DEFAULT_OFFER, true],
  [`${DEFAULT_OFFER}; server_no_context_takeover`, true],
  [`${DEFAULT_OFFER}; server_max_window_bits=8`, false],
  [`${DEFAULT_OFFER}; server_max_window_bits=15`, true],
  [`${DEFAULT_OFFER}; server_no_context_takeover; server_max_window_bits=8`, false],
  [`${DEFAULT_OFFER}; server_no_context_takeover; server_max_window_bits=15`, true],
  [
    `${DEFAULT_OFFER}; server_no_context_takeover; server_max_window_bits=8, ` +
      `${DEFAULT_OFFER}; server_no_context_takeover, ${DEFAULT_OFFER}`,
    true,
  ],
];
OFFERS_13.forEach(([offer, mustAccept], j) => {
  for (const i of [1, 4, 10, 15]) {
    const [size, fragment] = PMD_SIZES[i - 1]!;
    add(
      `13.${j + 1}.${i} compressed text, ${size} bytes${fragment === 0 ? '' : `, fragments of ${fragment}`}, offer "${offer}"`,
      () => compressedEchoes(offer, OP.TEXT, size, fragment, mustAccept),
    );
  }
});

// Negotiation beyond Autobahn's offers [extra]: the answer must be a valid RFC 7692 answer (the client
// checks it on every handshake), offers the server must decline are declined (§5), then compressed
// messages (if agreed) echo.
const OFFERS_EXTRA: [offer: string, mustAccept: boolean][] = [
  ['permessage-deflate', true],
  ['permessage-deflate; client_max_window_bits', true],
  ['permessage-deflate; server_max_window_bits=9', true],
  ['permessage-deflate; client_max_window_bits=8', true],
  ['permessage-deflate; client_max_window_bits=10; server_max_window_bits=10', true],
  ['permessage-deflate; client_max_window_bits="12"', false],
  ['permessage-deflate; server_max_window_bits=7', false],
  ['permessage-deflate; client_max_window_bits=16', false],
  ['permessage-deflate; server_max_window_bits', false],
  ['permessage-deflate; server_max_window_bits=010', false],
  ['permessage-deflate; foo=1', false],
  ['permessage-deflate; server_no_context_takeover=1', false],
  ['permessage-deflate; client_no_context_takeover; client_no_context_takeover', false],
  ['permessage-deflate; foo, permessage-deflate; client_max_window_bits', true],
  ['x-webkit-deflate-frame, permessage-deflate', true],
];
OFFERS_EXTRA.forEach(([offer, mustAccept], j) => {
  add(`13.${8 + j}.4 offer "${offer}", compressed text of 1024 bytes [extra]`, () =>
    compressedEchoes(offer, OP.TEXT, 1024, 0, mustAccept),
  );
});

// Compressed frames and the rules around them [extra].
add('12.6.1 compressed message in 2 fragments with a ping between -> pong, then echo [extra]', async () => {
  const c = await open(DEFAULT_OFFER);
  const text = JSON_DATA.subarray(0, 5000);
  const [a, b] = c.messageFrames(OP.TEXT, text, { fragment: Math.ceil(deflate(text).length / 2) }) as [
    Buffer,
    Buffer,
  ];
  c.send(a, frame(OP.PING, 'between'), b);
  await c.expectFrame(OP.PONG, 'between');
  await c.expectMessage(OP.TEXT, text);
  await c.closeNormally();
});
add('12.6.2 uncompressed messages on a deflate connection -> echoed [extra]', async () => {
  const c = await open(DEFAULT_OFFER);
  const text = JSON_DATA.subarray(0, 3000);
  c.send(
    ...c.messageFrames(OP.TEXT, text, { compress: false }),
    ...c.messageFrames(OP.BINARY, BITMAP, { compress: false }),
  );
  await c.expectMessage(OP.TEXT, text);
  await c.expectMessage(OP.BINARY, BITMAP);
  await c.closeNormally();
});
add(
  '12.6.3 compressed empty message (the single 0x00 octet, RFC 7692 §7.2.3.6) -> empty echo [extra]',
  async () => {
    const c = await open(DEFAULT_OFFER);
    c.send(
      frame(OP.TEXT, hex('00'), { rsv: RSV1 }),
      frame(OP.BINARY, deflate(Buffer.alloc(0)), { rsv: RSV1 }),
    );
    await c.expectMessage(OP.TEXT, '');
    await c.expectMessage(OP.BINARY, '');
    await c.closeNormally();
  },
);
add('12.6.4 compressed with a final (BFINAL) block (RFC 7692 §7.2.3.4) -> echoed [extra]', async () => {
  const c = await open(DEFAULT_OFFER);
  const text = JSON_DATA.subarray(0, 2000);
  c.send(frame(OP.TEXT, zlib.deflateRawSync(text), { rsv: RSV1 }));
  await c.expectMessage(OP.TEXT, text);
  await c.closeNormally();
});
add('12.6.5 1 MiB of zeros compressed (1000:1) -> echoed [extra]', async () => {
  const c = await open(DEFAULT_OFFER);
  const zeros = Buffer.alloc(1 << 20);
  c.send(...c.messageFrames(OP.BINARY, zeros));
  await c.expectMessage(OP.BINARY, zeros, 5_000);
  await c.closeNormally();
});
add('12.6.6 RSV1 on a continuation frame -> 1002 [extra, RFC 7692 §6.1]', async () => {
  const c = await open(DEFAULT_OFFER);
  const body = deflate(JSON_DATA.subarray(0, 2000));
  c.send(
    frame(OP.TEXT, body.subarray(0, 10), { fin: false, rsv: RSV1 }),
    frame(OP.CONTINUATION, body.subarray(10), { rsv: RSV1 }),
  );
  await c.expectClose(1002);
});
add('12.6.7 RSV1 on a ping -> 1002 [extra, RFC 7692 §6.1]', async () => {
  const c = await open(DEFAULT_OFFER);
  c.send(frame(OP.PING, deflate(Buffer.from('ping')), { rsv: RSV1 }));
  await c.expectClose(1002);
});
add('12.6.8 compressed text that inflates to invalid UTF-8 -> 1007 [extra]', async () => {
  const c = await open(DEFAULT_OFFER);
  c.send(frame(OP.TEXT, deflate(BAD), { rsv: RSV1 }));
  await c.expectClose(1007);
});
add('12.6.9 RSV2 on a message of a deflate connection -> 1002 [extra]', async () => {
  const c = await open(DEFAULT_OFFER);
  c.send(frame(OP.TEXT, deflate(Buffer.from('Hello')), { rsv: RSV1 | rsv(2) }));
  await c.expectClose(1002);
});

// ---- the run ---------------------------------------------------------------------------------------

for (const [name, run] of cases) test(name, { timeout: 10_000 }, run);

test('the server is still up after every case', async () => {
  assert.equal(child.exitCode, null);
  const c = await open();
  c.send(frame(OP.TEXT, 'still here'));
  await c.expectMessage(OP.TEXT, 'still here');
  await c.closeNormally();
});
