// The tree is the architecture (README "Layout"): these checks keep the import
// graph honest so that a front-end cannot reach the file system, the shared
// layer cannot reach a front-end, and no two modules need each other.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { REPO } from './helpers/repo.js';

const SRC = join(REPO, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return /\.c?ts$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** Every module specifier a file names, type-only imports and re-exports included. */
export function specifiers(text: string): string[] {
  const found: string[] = [];
  const pattern = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (const m of text.matchAll(pattern)) found.push((m[1] ?? m[2] ?? m[3])!);
  return found;
}

const files = sources(SRC);
test('reads the TypeScript sources of src/ (with none, every check below would pass)', () => assert.ok(files.length > 100, `${files.length} files in ${SRC}`));
const name = (file: string) => relative(SRC, file).replaceAll('\\', '/');
const imports = new Map<string, { spec: string; target: string | null }[]>(
  files.map((file) => [
    name(file),
    specifiers(readFileSync(file, 'utf8')).map((spec) => ({
      spec,
      target: spec.startsWith('.') ? name(resolve(dirname(file), spec).replace(/\.(c?)js$/, '.$1ts')) : null,
    })),
  ]),
);

/** Strongly connected components of more than one module (or a self-import): each is an import circle. */
export function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

test('the cycle finder finds circles, self-imports included, and nothing in a tree', () => {
  const g = (edges: Record<string, string[]>) => new Map(Object.entries(edges));
  assert.deepEqual(circles(g({ a: ['b'], b: ['c'], c: [] })), []);
  assert.deepEqual(circles(g({ a: ['b'], b: ['c'], c: ['a'], d: ['a'] })), [['a', 'b', 'c']]);
  assert.deepEqual(circles(g({ a: ['a'] })), [['a']]);
  assert.deepEqual(circles(g({ a: ['b'], b: ['a'], c: ['d'], d: ['c'] })).length, 2);
});

test('the import scanner sees type-only imports, re-exports, side-effect and dynamic imports', () => {
  const text = [
    "import type { A } from './a.js';",
    "import { b,\n  c } from './b.js';",
    "export { d } from './d.js';",
    "import './e.js';",
    "const f = await import('./f.js');",
    "import { promises as fsp } from 'node:fs';",
  ].join('\n');
  assert.deepEqual(specifiers(text), ['./a.js', './b.js', './d.js', './e.js', './f.js', 'node:fs']);
});

test('every relative import resolves to a source file', () => {
  const missing = [...imports].flatMap(([from, list]) =>
    list.filter((i) => i.target !== null && !imports.has(i.target)).map((i) => `${from} -> ${i.spec}`),
  );
  assert.deepEqual(missing, []);
});

test('no import circle anywhere in src/', () => {
  const graph = new Map([...imports].map(([from, list]) => [from, list.flatMap((i) => (i.target ? [i.target] : []))]));
  assert.deepEqual(circles(graph), []);
});

const FS = /^(node:)?fs(\/promises)?$/;

test('only the storage implementation touches the file system among session/, ftp/ and sftp/', () => {
  const offenders = [...imports]
    .filter(([from]) => /^(session|ftp|sftp)\//.test(from) && !from.startsWith('session/storage/'))
    .flatMap(([from, list]) => list.filter((i) => FS.test(i.spec)).map((i) => `${from} imports ${i.spec}`));
  assert.deepEqual(offenders, []);
});

test('the shared layer imports no front-end, and no front-end imports the other or the store', () => {
  const rules: [RegExp, RegExp][] = [
    [/^(session|security|auth|audit|coordinator)\//, /^(ftp|sftp|cli|cluster)\//],
    // The coordinator keeps state; the store and the processes are others' to open and run.
    [/^coordinator\//, /^(store|cluster)\//],
    [/^ftp\//, /^(sftp|store|cli)\//],
    [/^sftp\//, /^(ftp|store|cli)\//],
  ];
  const offenders = [...imports].flatMap(([from, list]) =>
    rules
      .filter(([who]) => who.test(from))
      .flatMap(([, forbidden]) => list.filter((i) => i.target && forbidden.test(i.target)).map((i) => `${from} -> ${i.target}`)),
  );
  assert.deepEqual(offenders, []);
});

test('only store/ opens a database: SQLite in store/sqlite/, PostgreSQL in store/postgres/ (others may name their types)', () => {
  const opens = (driver: string) => (file: string) => new RegExp(`^import\\s+(?!type\\s)[^;]*from\\s*['"]${driver}['"]`, 'm').test(readFileSync(file, 'utf8'));
  const offenders = [
    ...files.filter((file) => !name(file).startsWith('store/sqlite/') && opens('better-sqlite3')(file)),
    ...files.filter((file) => !name(file).startsWith('store/postgres/') && opens('pg')(file)),
  ].map(name);
  assert.deepEqual(offenders, []);
});

test('only ssh2.ts loads ssh2 (others name its types): the pooled padding randomness is in place only while it loads', () => {
  const loads = (file: string) => {
    const text = readFileSync(file, 'utf8');
    return /^import\s+(?!type\s)[^;]*from\s*['"]ssh2['"]/m.test(text) || /require\(\s*['"]ssh2['"]\s*\)|import\(\s*['"]ssh2['"]\s*\)/.test(text);
  };
  assert.deepEqual(files.filter((file) => name(file) !== 'ssh2.ts' && loads(file)).map(name), []);
});
