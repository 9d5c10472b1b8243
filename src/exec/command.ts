import { parseScpCommand, type ScpCommand } from '../scp/command.js';
import { HASH_PROGRAMS, parseHashCommand, type HashCommand } from './hash-command.js';
import { CommandError, shellWords } from './words.js';

/** An SSH exec request this server runs: legacy SCP, or a checksum command. */
export type ExecCommand = { readonly kind: 'scp'; readonly scp: ScpCommand } | { readonly kind: 'hash'; readonly hash: HashCommand };

/** Which commands are served (sftp.scp, sftp.hashCommands). */
export interface ServedCommands {
  readonly scp: boolean;
  readonly hash: boolean;
}

/**
 * Pure: an exec request's command line as one of the commands `served`, or
 * CommandError saying why not; its `program` names the served command it
 * was meant for, even when its words could not be split (scp answers such
 * a refusal in its own protocol).
 */
export function parseExecCommand(line: string, served: ServedCommands): ExecCommand {
  const programs = [...(served.scp ? ['scp'] : []), ...(served.hash ? Object.keys(HASH_PROGRAMS) : [])];
  let words: string[];
  try {
    words = shellWords(line);
  } catch (err) {
    const first = programOf(line);
    if (err instanceof CommandError && first !== null && programs.includes(first)) throw new CommandError(err.message, first);
    throw err;
  }
  const program = words[0] ?? '';
  if (!programs.includes(program)) throw new CommandError(`only ${programs.join(', ')} ${programs.length === 1 ? 'is' : 'are'} served here`);
  return program === 'scp' ? { kind: 'scp', scp: parseScpCommand(words) } : { kind: 'hash', hash: parseHashCommand(words) };
}

/** The program a line that could not be split names (quoted, as `'md5sum' *`, it is still md5sum's refusal); null if even that word cannot be read. */
function programOf(line: string): string | null {
  const first = /^[ \t]*([^ \t]+)/.exec(line)?.[1];
  if (first === undefined) return null;
  try {
    const words = shellWords(first);
    return words.length === 1 ? (words[0] as string) : null;
  } catch {
    return null;
  }
}
