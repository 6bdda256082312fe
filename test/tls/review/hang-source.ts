// A CertificateSource whose first load of a name never settles (a control plane that hung on one request);
// later loads answer at once from NETLOOM_TEST_SOURCE_DIR.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CertificateSource } from 'netloom';

const g = globalThis as { hangLoads?: Map<string, number> };
g.hangLoads ??= new Map();

const source: CertificateSource = {
  async load(name) {
    const n = (g.hangLoads!.get(name) ?? 0) + 1;
    g.hangLoads!.set(name, n);
    if (n === 1) return new Promise(() => {});
    const dir = process.env.NETLOOM_TEST_SOURCE_DIR!;
    try {
      return {
        cert: await readFile(join(dir, `${name}.crt`)),
        key: await readFile(join(dir, `${name}.key`)),
      };
    } catch {
      return null;
    }
  },
};
export default source;
