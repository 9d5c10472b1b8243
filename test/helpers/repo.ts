import { realpathSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The checkout's root directory, the same whether this file runs as test/helpers/repo.ts (under
 * tsx) or compiled as build/test/helpers/repo.js (`npm test`; see test/build.mjs): build/'s
 * package.json is a link to the checkout's own. For what must be the checkout's own files and not
 * build/'s stand-ins: the TypeScript sources in src/ (build/src is dist/), the install directory.
 */
export const REPO = dirname(realpathSync(fileURLToPath(new URL('../../package.json', import.meta.url))));
