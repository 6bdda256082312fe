// A plugin for the review tests: a filter whose settings validate but that every loop refuses to build
// (a version rolled back after validation, as a missing file or a failing plugin would cause).
import { defineFilter } from 'netloom/gateway';
import { z } from 'zod';

export const loopRefuses = defineFilter({
  name: 'loop-refuses',
  settings: z.object({}).strict(),
  create() {
    throw new Error('deliberate: this loop cannot build the version');
  },
});
