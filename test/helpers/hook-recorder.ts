import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A node script in `dir` for a hook's command: run as `node script FILE ...`,
 * it appends to FILE one JSON line of its arguments after FILE, or of its
 * environment (`what: 'env'`).
 */
export function hookRecorder(dir: string, what: 'argv' | 'env' = 'argv'): string {
  const script = join(dir, `record-${what}.js`);
  const recorded = what === 'argv' ? 'process.argv.slice(3)' : 'process.env';
  writeFileSync(script, `require('fs').appendFileSync(process.argv[2], JSON.stringify(${recorded}) + '\\n');\n`);
  return script;
}

/**
 * Whether the recorder has written a whole record to `out`: its append
 * creates the file before it writes the line, and a test that read the file
 * once it existed parsed an empty one (found in CI: "Unexpected end of JSON
 * input").
 */
export function hasRecord(out: string): boolean {
  return existsSync(out) && readFileSync(out, 'utf8').includes('\n');
}
