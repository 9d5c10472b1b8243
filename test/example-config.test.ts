import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it, after } from 'node:test';
import { parse } from 'yaml';
import { loadConfig } from '../src/config/load.js';
import { configSchema } from '../src/config/schema.js';

const EXAMPLE = fileURLToPath(new URL('../deploy/sluice.example.yaml', import.meta.url));
const cwd = mkdtempSync(join(tmpdir(), 'sluice-example-'));
after(() => rmSync(cwd, { recursive: true, force: true }));

function leafKeys(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [prefix];
  return Object.entries(value).flatMap(([k, v]) => leafKeys(v, prefix ? `${prefix}.${k}` : k));
}

describe('deploy/sluice.example.yaml', () => {
  it('documents every key, each with its default', () => {
    const example = parse(readFileSync(EXAMPLE, 'utf8')) as unknown;
    const defaults = configSchema.parse({});
    assert.deepEqual(leafKeys(example).sort(), leafKeys(defaults).sort());
    assert.deepEqual(example, defaults);
  });
  it('loads as a configuration file', () => {
    assert.equal(loadConfig({ file: EXAMPLE, cwd, env: {} }).ftp.port, 2121);
  });
});
