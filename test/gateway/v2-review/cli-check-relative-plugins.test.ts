// `netloom-gateway --check --config FILE --plugins ./relative.ts` refuses a configuration that the same
// command without --check starts: --check hands the --plugins values to loadConfig() unresolved, so a
// relative path is imported relative to gateway/config.ts (inside the package), not the working directory
// (startGateway resolves them against process.cwd()). `--check` is what CI runs before a deploy.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'netloom-gateway.js');

test('--check accepts --plugins relative to the working directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'netloom-review-'));
  const file = join(dir, 'gw.yaml');
  writeFileSync(
    file,
    'listeners:\n  - address: 127.0.0.1:0\nupstreams:\n  app:\n    targets:\n      - address: 127.0.0.1:9\nroutes:\n  - name: r\n    match: { path: / }\n    upstream: app\n    filters:\n      - { name: api-key, keys: ["k-0123456789abcdef"] }\n',
  );
  const r = spawnSync(
    process.execPath,
    [
      '--conditions=netloom-source',
      BIN,
      '--check',
      '--config',
      file,
      '--plugins',
      './examples/gateway-plugin/api-key.ts',
    ],
    { cwd: ROOT, encoding: 'utf8', timeout: 20_000 },
  );
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
});
