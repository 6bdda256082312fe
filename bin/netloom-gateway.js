#!/usr/bin/env node
// The netloom-gateway command: the compiled CLI in an installed package, the TypeScript source in a
// checkout that has not been built (Node strips the types outside node_modules).
import { existsSync } from 'node:fs';

const built = new URL('../dist/gateway/cli.js', import.meta.url);
await import(existsSync(built) ? built.href : new URL('../gateway/cli.ts', import.meta.url).href);
