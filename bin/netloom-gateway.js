#!/usr/bin/env node
// The netloom-gateway command (see gateway/cli.ts). An installed package runs the compiled CLI; a checkout
// runs the TypeScript source when it has not been built or when started with --conditions=netloom-source
// (Node strips the types outside node_modules).
import { existsSync } from 'node:fs';

const built = new URL('../dist/gateway/cli.js', import.meta.url);
const source = new URL('../gateway/cli.ts', import.meta.url);
const fromSource = process.execArgv.some((a) => a.includes('netloom-source')) || !existsSync(built);
await import((fromSource ? source : built).href);
