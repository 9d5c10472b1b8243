import { readFileSync } from 'node:fs';

const UNIT = new URL('../../deploy/sluice.service', import.meta.url);

/** The malloc settings deploy/sluice.service gives the server (Environment=MALLOC_...=...). */
export function unitMallocEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of readFileSync(UNIT, 'utf8').matchAll(/^Environment=(MALLOC_\w+)=(\S+)$/gm)) env[m[1] as string] = m[2] as string;
  return env;
}
