/**
 * Part of `npm run build`, after tsc: replaces dist/config/zod.js, which
 * re-exports what the configuration uses of zod, by one file holding just
 * that (see src/config/zod.ts for why). esbuild takes zod's ES modules and
 * leaves out what nothing imports; zod declares itself free of side effects.
 */
import { buildSync } from 'esbuild';
import { fileURLToPath } from 'node:url';

const file = fileURLToPath(new URL('../dist/config/zod.js', import.meta.url));
buildSync({
  entryPoints: [file],
  outfile: file,
  allowOverwrite: true,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  legalComments: 'inline',
  sourcemap: true,
  logLevel: 'warning',
});
