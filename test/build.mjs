/**
 * Compiles the tests to JavaScript for `npm test` (its pretest runs `npm run build:test`, which
 * builds dist/ and then runs this): tsx's loader cost each test file's process about 0.4 s of CPU
 * at its start, some 90 s a run of the suite on its two cores.
 *
 * build/ stands in for the checkout, so that every path a test takes relative to its own file
 * (`new URL('../deploy/…', import.meta.url)`, `./fixtures/…`, `../../dist/bin.cjs`) finds the same
 * file as under tsx:
 *   build/test/  the compiled test/, with a link to each of test/'s other files (fixtures/)
 *   build/src    a link to dist/: the tests import the compiled server that `npm run build` made
 *                from the same sources and that the servers under test run, not a second copy
 *   build/<x>    a link to the checkout's <x>, for every other entry (deploy/, dist/, package.json…)
 * So src/'s TypeScript is not under build/src: a test that reads it (test/architecture.test.ts) or
 * hands a .ts file to a child's tsx takes it from test/helpers/repo.ts's REPO.
 *
 * build/ is made anew each time: a deleted test's compiled file must not run.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const build = join(root, 'build');

rmSync(build, { recursive: true, force: true });
// test/tsconfig.json only type-checks (`npm run typecheck`); emitting is asked for here alone, into a build/ made anew.
execFileSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'test', '--noEmit', 'false', '--outDir', build], { cwd: root, stdio: 'inherit' });
// tsc emitted the src/ the tests import as well: dist/ stands in for it.
rmSync(join(build, 'src'), { recursive: true, force: true });
symlinkSync(relative(build, join(root, 'dist')), join(build, 'src'));

/** Links each entry of `from` that `to` lacks, going into the directories both have; TypeScript files were compiled. */
function link(from, to, skip) {
  for (const entry of readdirSync(from)) {
    if (skip.includes(entry) || /\.[cm]?ts$/.test(entry)) continue;
    const source = join(from, entry);
    const target = join(to, entry);
    if (!existsSync(target)) symlinkSync(relative(to, source), target);
    else if (statSync(source).isDirectory() && statSync(target).isDirectory()) link(source, target, []);
  }
}
link(root, build, ['.git', 'build', 'src']);
