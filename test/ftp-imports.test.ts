import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const FTP = fileURLToPath(new URL('../src/ftp/', import.meta.url));

/** Every module specifier a source file imports or re-exports, type-only ones included. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]/gm), ...text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)].map(
    (m) => m[1] as string,
  );
}

const files = (readdirSync(FTP, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).map((f) => join(FTP, f));

describe('src/ftp/ layering', () => {
  it('has source files to check', () => assert.ok(files.length > 10));

  it('imports no file system module: files are the session layer\'s business', () => {
    for (const file of files) {
      for (const spec of importsOf(file)) {
        assert.doesNotMatch(spec, /^(node:)?fs(\/promises)?$/, relative(FTP, file));
      }
    }
  });

  it('the connection and its command-facing interface import nothing from commands/', () => {
    for (const name of ['connection.ts', 'control.ts']) {
      const specs = importsOf(join(FTP, name));
      assert.ok(specs.length > 0);
      for (const spec of specs) assert.doesNotMatch(spec, /commands\//, name);
    }
  });
});
