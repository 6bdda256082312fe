// A CertificateSource whose first load of a name never settles (a control plane that hung on one request);
// later loads answer at once from NETLOOM_TEST_SOURCE_DIR.

import type { CertificateSource } from 'netloom';
import { pairFromTestDir } from '../../fixtures/cert-source.ts';

const g = globalThis as { hangLoads?: Map<string, number> };
g.hangLoads ??= new Map();

const source: CertificateSource = {
  async load(name) {
    const n = (g.hangLoads!.get(name) ?? 0) + 1;
    g.hangLoads!.set(name, n);
    if (n === 1) return new Promise(() => {});
    return pairFromTestDir(name);
  },
};
export default source;
