import { readFileSync } from 'node:fs';

/** The version in package.json; read once, at the first call (start-up or a CLI command). */
export const version = (() => {
  let text: string | null = null;
  return (): string => (text ??= (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version);
})();
