import { CommandError, pathOperand, optionsAndOperands } from '../exec/words.js';

/**
 * The exec request of a legacy SCP client (`scp -O`, PuTTY's `pscp -scp`):
 * scp itself, in the two roles a client asks for, its words split by
 * exec/words.ts.
 */
export type ScpCommand =
  | { readonly role: 'sink'; readonly target: string; readonly recursive: boolean; readonly preserve: boolean; readonly targetIsDirectory: boolean }
  | { readonly role: 'source'; readonly paths: readonly string[]; readonly recursive: boolean; readonly preserve: boolean };

/** Flags scp sends to its remote end: -t (sink), -f (source), -r, -p, -d, -v. */
const FLAGS = new Set(['t', 'f', 'r', 'p', 'd', 'v']);

/** Pure: the words of `scp -t -- /up`, `scp -r -p -f 'a b' c` (words[0] is scp) as a command, or CommandError saying why not. */
export function parseScpCommand(words: readonly string[]): ScpCommand {
  const refused = (why: string) => new CommandError(why, 'scp');
  const { options, operands } = optionsAndOperands(words);
  const seen = new Set<string>();
  for (const f of options.flatMap((w) => [...w.slice(1)])) {
    if (!FLAGS.has(f)) throw refused(`unsupported option -${f}`);
    seen.add(f);
  }
  const paths = operands.map((w) => pathOperand(w, 'scp'));
  const recursive = seen.has('r');
  const preserve = seen.has('p');
  if (seen.has('t') === seen.has('f')) throw refused('exactly one of -t and -f');
  if (seen.has('t')) {
    if (paths.length !== 1) throw refused('one target expected');
    return { role: 'sink', target: paths[0] as string, recursive, preserve, targetIsDirectory: seen.has('d') };
  }
  if (seen.has('d')) throw refused('-d applies to -t only');
  if (paths.length === 0) throw refused('no source given');
  return { role: 'source', paths, recursive, preserve };
}
