// Long differential fuzzing of the HTTP/1.1 request parser against llhttp (the same fuzzer as
// test/http1/differential-fuzz.test.ts, for millions of inputs):
//
//   node --conditions=netloom-source bench/fuzz-http1.ts --iterations 5000000 --seed 42
//   node --conditions=netloom-source bench/fuzz-http1.ts --seed 42 --from 123456 --iterations 1     # replay one input
//
// Prints the count of every outcome class (agree:*, deliberate:*, violation:*) and the first example of each
// violation signature, minimized. Exits 1 when there is any violation.
import { parseArgs } from 'node:util';
import { DELIBERATE, type FuzzStats, formatFinding, makeInput, runFuzz } from '../test/http1/fuzz-core.ts';
import { startServerDriver, stopServerDriver } from '../test/http1/server-driver.ts';

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '1000000' },
    seed: { type: 'string', default: String(Date.now() % 2 ** 31) },
    from: { type: 'string', default: '0' },
    'split-every': { type: 'string', default: '4' },
    'max-findings': { type: 'string', default: '40' },
    'no-minimize': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help) {
  console.log(
    'usage: node bench/fuzz-http1.ts [--iterations N] [--seed S] [--from I] [--split-every K] [--max-findings F] [--no-minimize]',
  );
  process.exit(0);
}

function integer(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error(`--${name} must be a non-negative integer, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return n;
}

const seed = integer('seed', values.seed);
const iterations = integer('iterations', values.iterations);
const from = integer('from', values.from);
const splitEvery = Math.max(1, integer('split-every', values['split-every']));

function printCounts(stats: FuzzStats): void {
  const rows = Object.entries(stats.counts).sort((a, b) => a[0].localeCompare(b[0]));
  for (const [cls, count] of rows) {
    const pct = ((100 * count) / Math.max(1, stats.iterations + stats.splitChecked)).toFixed(3);
    console.log(`  ${cls.padEnd(42)} ${String(count).padStart(10)}  ${pct.padStart(7)}%`);
  }
}

console.log(
  `fuzzing ${iterations} inputs from iteration ${from}, seed ${seed}, split check every ${splitEvery}`,
);
if (iterations === 1) {
  const input = makeInput(seed, from);
  console.log(`input ${from} (corpus ${input.seedIndex}; ${input.ops.join(' | ')}):`);
  console.log(`  ${JSON.stringify(input.bytes.toString('latin1'))}`);
}

await startServerDriver();
const stats = runFuzz({
  seed,
  iterations,
  from,
  splitEvery,
  minimize: !values['no-minimize'],
  maxFindings: integer('max-findings', values['max-findings']),
  progress: (s) => {
    const rate = Math.round(s.iterations / (s.ms / 1000));
    const bad = Object.entries(s.counts)
      .filter(([cls]) => cls.startsWith('violation:'))
      .reduce((sum, [, n]) => sum + n, 0);
    console.log(`  ${s.iterations} inputs, ${rate}/s, ${bad} violation(s) so far`);
  },
});
await stopServerDriver();

console.log(
  `\n${stats.iterations} inputs (${stats.splitChecked} split checks) in ${(stats.ms / 1000).toFixed(1)} s: ` +
    `${Math.round(stats.iterations / (stats.ms / 1000))} inputs/s\n`,
);
printCounts(stats);
const used = Object.keys(stats.counts).filter((c) => c.startsWith('deliberate:'));
if (used.length > 0) {
  console.log('\ndeliberate differences seen:');
  for (const cls of used)
    console.log(`  ${cls.slice(11)}: ${DELIBERATE[cls.slice(11)] ?? '(undocumented!)'}`);
}
if (stats.findings.length > 0) {
  console.log(`\n${stats.findings.length} violation signature(s):\n`);
  for (const f of stats.findings) console.log(`${formatFinding(seed, f)}\n`);
  process.exitCode = 1;
} else {
  console.log('\nno violations');
}
