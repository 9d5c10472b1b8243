/**
 * The exec request of a legacy SCP client (`scp -O`, PuTTY's `pscp -scp`),
 * parsed and never run: there is no shell, so the only command that exists
 * is scp itself, in the two roles a client asks for. A remote shell would
 * also expand wildcards, variables and `~user`; those are refused with a
 * clear message rather than half-emulated.
 */
export type ScpCommand =
  | { readonly role: 'sink'; readonly target: string; readonly recursive: boolean; readonly preserve: boolean; readonly targetIsDirectory: boolean }
  | { readonly role: 'source'; readonly paths: readonly string[]; readonly recursive: boolean; readonly preserve: boolean };

export class ScpCommandError extends Error {
  override name = 'ScpCommandError';
}

/** Flags scp sends to its remote end: -t (sink), -f (source), -r, -p, -d, -v. */
const FLAGS = new Set(['t', 'f', 'r', 'p', 'd', 'v']);
/** Outside quotes these mean something to a shell; no scp client sends them unquoted in a plain path. */
const SHELL_SPECIAL = new Set([...'|&;<>()$`{}*?[']);
/** Longest exec line taken: a path of PATH_MAX and the flags. */
const MAX_COMMAND = 8192;

/** Pure: `scp -t -- /up`, `scp -r -p -f 'a b' c` as a command, or ScpCommandError saying why not. */
export function parseScpCommand(line: string): ScpCommand {
  if (line.length > MAX_COMMAND) throw new ScpCommandError('command too long');
  const words = shellWords(line);
  if (words[0] !== 'scp') throw new ScpCommandError('only scp is served here');
  const seen = new Set<string>();
  let i = 1;
  for (; i < words.length; i++) {
    const w = words[i] as string;
    if (w === '--') {
      i++;
      break;
    }
    if (!w.startsWith('-') || w === '-') break;
    for (const f of w.slice(1)) {
      if (!FLAGS.has(f)) throw new ScpCommandError(`unsupported option -${f}`);
      seen.add(f);
    }
  }
  const paths = words.slice(i).map(homePath);
  const recursive = seen.has('r');
  const preserve = seen.has('p');
  if (seen.has('t') === seen.has('f')) throw new ScpCommandError('exactly one of -t and -f');
  if (seen.has('t')) {
    if (paths.length !== 1) throw new ScpCommandError('one target expected');
    return { role: 'sink', target: paths[0] as string, recursive, preserve, targetIsDirectory: seen.has('d') };
  }
  if (seen.has('d')) throw new ScpCommandError('-d applies to -t only');
  if (paths.length === 0) throw new ScpCommandError('no source given');
  return { role: 'source', paths, recursive, preserve };
}

/** `~` and `~/x` are the home, the root every path of the session starts from; `~user` has no meaning here. */
function homePath(word: string): string {
  if (word === '~' || word === '~/') return '/';
  if (word.startsWith('~/')) return word.slice(1);
  if (word.startsWith('~')) throw new ScpCommandError('~user paths are not supported');
  if (word === '') throw new ScpCommandError('empty path');
  return word;
}

/** POSIX shell word splitting for quotes and backslashes only; anything that would expand or redirect is refused. */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let word: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === ' ' || c === '\t') {
      if (word !== null) words.push(word);
      word = null;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new ScpCommandError('unterminated quote');
      word = (word ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let text = '';
      for (i++; i < line.length && line[i] !== '"'; i++) {
        const d = line[i] as string;
        if (d === '$' || d === '`') throw new ScpCommandError('shell expansion is not supported');
        // Inside double quotes a backslash escapes only these; elsewhere it stays.
        if (d === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1] as string)) text += line[++i];
        else text += d;
      }
      if (i >= line.length) throw new ScpCommandError('unterminated quote');
      word = (word ?? '') + text;
    } else if (c === '\\') {
      if (i + 1 >= line.length) throw new ScpCommandError('trailing backslash');
      word = (word ?? '') + line[++i];
    } else if (c === '\n' || c === '\r' || c === '\0') {
      throw new ScpCommandError('control character in command');
    } else if (SHELL_SPECIAL.has(c) || (c === '#' && word === null)) {
      throw new ScpCommandError(c === '*' || c === '?' || c === '[' ? 'wildcards are not supported: name each file' : `shell syntax "${c}" is not supported`);
    } else {
      word = (word ?? '') + c;
    }
  }
  if (word !== null) words.push(word);
  return words;
}
