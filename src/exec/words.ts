/**
 * An SSH exec request's command line, split into words as a POSIX shell
 * would for quotes, backslashes and `~`, and never run: there is no shell.
 * A remote shell would also expand wildcards, variables and `~user`, and
 * chain or redirect commands; those are refused with a clear message rather
 * than half-emulated. What the words mean is the command's own parser's
 * (scp/command.ts, exec/hash-command.ts; exec/command.ts picks one).
 */

/** Why a command line is refused; `program` is the command it names, when one that is served here. */
export class CommandError extends Error {
  override name = 'CommandError';

  constructor(
    message: string,
    readonly program: string | null = null,
  ) {
    super(message);
  }
}

/** Outside quotes these mean something to a shell; no client sends them unquoted in a plain path. */
const SHELL_SPECIAL = new Set([...'|&;<>()$`{}*?[']);
/** Longest exec line taken: a path of PATH_MAX and the flags. */
const MAX_COMMAND = 8192;

/**
 * A command's words after its name, split as getopt does: the options before
 * the first operand (a word not starting with '-', or '-' alone) or `--`,
 * and the operands.
 */
export function optionsAndOperands(words: readonly string[]): { options: string[]; operands: string[] } {
  let i = 1;
  for (; i < words.length; i++) {
    const w = words[i] as string;
    if (w === '--') return { options: words.slice(1, i), operands: words.slice(i + 1) };
    if (!w.startsWith('-') || w === '-') break;
  }
  return { options: words.slice(1, i), operands: words.slice(i) };
}

/** A word naming a file (its ~ read by shellWords); an empty one names none. */
export function pathOperand(word: string, program: string): string {
  if (word === '') throw new CommandError('empty path', program);
  return word;
}

/**
 * Tilde expansion as a shell does it, of the word starting at `line[start]`
 * with `~`: its prefix runs to the first unquoted `/` or the word's end, and
 * is expanded only when nothing in it is quoted. `~` and `~/x` are the home,
 * the root every path of the session starts from: `/` and `/x`; `~user` has
 * no meaning here. Null: a name of its own (`\~/x`, `'~'/x`, `~"/x"`), which
 * was the home's x when the quotes were taken off first: scp -t put an
 * upload there, over another file (found by a review).
 */
function tilde(line: string, start: number): { word: string; next: number } | null {
  let end = start + 1;
  while (end < line.length && !' \t/'.includes(line[end] as string)) end++;
  const prefix = line.slice(start + 1, end);
  if (/['"\\]/.test(prefix)) return null;
  if (prefix !== '') throw new CommandError('~user paths are not supported');
  return { word: line[end] === '/' ? '' : '/', next: end - 1 };
}

/** POSIX shell word splitting for quotes, backslashes and `~` only; anything else that would expand or redirect is refused. */
export function shellWords(line: string): string[] {
  if (line.length > MAX_COMMAND) throw new CommandError('command too long');
  const words: string[] = [];
  let word: string | null = null;
  let expanded: { word: string; next: number } | null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === ' ' || c === '\t') {
      if (word !== null) words.push(word);
      word = null;
    } else if (c === '~' && word === null && (expanded = tilde(line, i)) !== null) {
      word = expanded.word;
      i = expanded.next;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new CommandError('unterminated quote');
      word = (word ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let text = '';
      for (i++; i < line.length && line[i] !== '"'; i++) {
        const d = line[i] as string;
        if (d === '$' || d === '`') throw new CommandError('shell expansion is not supported');
        // Inside double quotes a backslash escapes only these; elsewhere it stays.
        if (d === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1] as string)) text += line[++i];
        else text += d;
      }
      if (i >= line.length) throw new CommandError('unterminated quote');
      word = (word ?? '') + text;
    } else if (c === '\\') {
      if (i + 1 >= line.length) throw new CommandError('trailing backslash');
      word = (word ?? '') + line[++i];
    } else if (c === '\n' || c === '\r' || c === '\0') {
      throw new CommandError('control character in command');
    } else if (SHELL_SPECIAL.has(c) || (c === '#' && word === null)) {
      throw new CommandError(c === '*' || c === '?' || c === '[' ? 'wildcards are not supported: name each file' : `shell syntax "${c}" is not supported`);
    } else {
      word = (word ?? '') + c;
    }
  }
  if (word !== null) words.push(word);
  return words;
}
