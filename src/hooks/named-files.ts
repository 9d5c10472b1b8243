import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { runnerOf } from './inline-code.js';

/**
 * Every file a hook command may run or read, as far as its words tell:
 * the program (found in PATH as spawn finds it, when named bare) and every
 * word of every argument that looks like a path ('/' in it), relative ones
 * taken from the working directory as spawn does, words of a shell script
 * (`sh -c '/opt/x/run.sh "$1"' sh {path}`) included. Placeholders are what the
 * event fills in, not files. No home may hold one of these (app.ts
 * serverFilesOf): a user who could rewrite a hook's script would run code
 * as the server. Over-inclusion only keeps a home out of one more place.
 */
export function hookNamedFiles(command: readonly string[], path = process.env.PATH ?? ''): string[] {
  const [program = '', ...args] = command;
  return [...programFiles(program, path), ...args.flatMap(pathWords)];
}

/**
 * Why spawn will not start the program of `command`, or null: a config can
 * name one that is not there (yet), and every event of its hook then fails
 * (found by an operator's walk: nothing said so before the first event).
 * Read once at start, not on any transfer's path.
 */
export function hookProgramProblem(command: readonly string[], path = process.env.PATH ?? ''): string | null {
  const program = command[0] ?? '';
  const found = programFiles(program, path);
  if (found.length === 0) return program.includes('/') ? `${program}: no such file` : `${program}: not found in PATH (${path})`;
  // As execvp, past a match in PATH it may not run to the next one (found by a review: only the first was looked at).
  const problems = found.map((file) => {
    try {
      if (!statSync(file).isFile()) return `${file}: not a file`;
      accessSync(file, constants.X_OK);
      return null;
    } catch (err) {
      return `${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'not executable by the server'}`;
    }
  });
  if (!problems.includes(null)) return problems[0] ?? null;
  return program.includes('/') && !program.startsWith('/') ? `${program}: relative to the server's working directory (${process.cwd()}); name it by its full path` : null;
}

/** The program as spawn finds it: by its path, or in PATH when named bare. */
function programFiles(program: string, path: string): string[] {
  if (program === '' || program.includes('/')) return pathWords(program);
  return path.split(delimiter).flatMap((dir) => (dir !== '' && existsSync(join(dir, program)) ? [join(dir, program)] : []));
}

/** The words of an argument that look like paths ('/' in them), placeholders aside. */
function pathWords(arg: string): string[] {
  return arg.split(/[\s'"`;|&()<>=]+/).flatMap((word) => (word.includes('/') && !word.includes('{') ? [resolve(word)] : []));
}

/**
 * The directories of the PATH hook commands run with (BASE_ENV in
 * runner.ts), where every program a hook runs or starts by a bare name is
 * looked for, at each run: the hook's own, a launcher's (`nice notify`),
 * and what a hook's script calls (`curl`, `logger`). An empty or relative
 * entry is taken from the working directory, as execvp takes it. No home
 * may be or hold one (serverFilesOf): found by an adversarial review, a
 * home at the service account's `~/bin`, first in PATH, let its user upload
 * `true`, chmod it 755, and have a hook `['true']` run it as the server at
 * the next login. A home inside one is no matter: only the files right in
 * it are looked up.
 */
export function hookSearchPath(path = process.env.PATH ?? ''): string[] {
  return [...new Set(path.split(delimiter).map((dir) => resolve(dir)))];
}

/**
 * The directories from which the program a hook runs, and the script an
 * interpreter it starts is given (its first argument that is no option),
 * may load code: the directory each is in (Python imports from its
 * script's, a shell script may source beside it) and `node_modules` in
 * that directory and every one above it (Node's modules). No home may be,
 * hold or lie in one (serverFilesOf), as for the files themselves: found by
 * a review, a home made beside a Python hook's script as `requests` gave
 * its user `import requests`, code run as the server. Only these and not
 * the directories of every path a command names: a hook that moves uploads
 * to /srv/ftp/archive must not keep every home under /srv/ftp out.
 */
export function hookCodePlaces(command: readonly string[], path = process.env.PATH ?? ''): string[] {
  const { at, kind } = runnerOf(command);
  const script = kind === 'shell' || kind === 'interpreter' ? command.slice(at + 1).find((a) => !a.startsWith('-')) : undefined;
  const dirs = [...programFiles(command[at] ?? '', path), ...(script === undefined ? [] : pathWords(script))].map((f) => dirname(f));
  return [...new Set(dirs.flatMap((dir) => [dir, ...ancestors(dir).map((d) => join(d, 'node_modules'))]))];
}

function ancestors(dir: string): string[] {
  const up = dirname(dir);
  return up === dir ? [dir] : [dir, ...ancestors(up)];
}

/** Start-up: each hook whose program spawn will not start, said once (hookProgramProblem). */
export function reportHookPrograms(actions: readonly { name: string; command?: readonly string[] | undefined }[], log: { warn(obj: object, msg: string): void }): void {
  for (const { name, command } of actions) {
    const problem = command === undefined ? null : hookProgramProblem(command);
    if (problem !== null) log.warn({ hook: name, problem }, `hook ${name}: ${problem}`);
  }
}
