#!/usr/bin/env node
// The `sluice` command (npx, an installed package). It is kept in git with its
// executable bit, so the command runs from the clone on, also while a build is
// rewriting dist/ (tsc writes new files without it); the program is dist/bin.cjs.
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const program = join(__dirname, '..', 'dist', 'bin.cjs');
if (!existsSync(program)) {
  process.stderr.write('sluice is not built yet: run `npm run build` (npm start and npm test build it first)\n');
  process.exit(1);
}
require(program);
