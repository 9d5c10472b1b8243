import { createHash } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { WHOLE_FILE, type HashAlgorithm } from '../session/checksum.js';
import { SluiceError } from '../session/errors.js';
import type { Session } from '../session/session.js';
import { shown } from '../session/unsafe-chars.js';
import { CommandError, pathOperand, optionsAndOperands } from './words.js';

/**
 * GNU coreutils' checksum programs, as sync tools run them over SSH where
 * there is a shell: rclone asks `md5sum` and `sha1sum` for the hash of each
 * file it checks (and, to find them, for the hash of an empty input), and
 * with none answering compares sizes only. Each is a checksum of the session
 * layer: the download permission, the hashing rate, an audit record.
 */
export const HASH_PROGRAMS: Readonly<Record<string, HashAlgorithm>> = {
  md5sum: 'md5',
  sha1sum: 'sha1',
  sha256sum: 'sha256',
  sha384sum: 'sha384',
  sha512sum: 'sha512',
};

export interface HashCommand {
  readonly program: string;
  readonly algorithm: HashAlgorithm;
  /** Empty: the standard input, which is answered only when it is empty. */
  readonly paths: readonly string[];
  /** `-b`: coreutils marks each line's name with `*` (binary mode), as tools that parse its lines expect. */
  readonly binary: boolean;
}

/** Files one command may name: each is a checksum, read in its turn. */
const MAX_PATHS = 64;
/**
 * Binary and text mode read the same bytes on every POSIX system; only the
 * mark before each name differs, and the last of them given counts.
 */
const MODES: Readonly<Record<string, boolean>> = { '-b': true, '--binary': true, '-t': false, '--text': false };

/** Pure: the words of `md5sum -- /a /b` (words[0] is one of HASH_PROGRAMS) as a command, or CommandError saying why not. */
export function parseHashCommand(words: readonly string[]): HashCommand {
  const program = words[0] as string;
  const algorithm = HASH_PROGRAMS[program] as HashAlgorithm;
  const { options: given, operands } = optionsAndOperands(words);
  // Grouped as getopt takes them: `-bt` is `-b -t`.
  const options = given.flatMap((w) => (w.startsWith('--') ? [w] : [...w.slice(1)].map((c) => `-${c}`)));
  const unknown = options.find((w) => !Object.hasOwn(MODES, w));
  if (unknown !== undefined) throw new CommandError(`unsupported option ${unknown}`, program);
  // Every option is a mode here: the last one given.
  const binary = MODES[options.at(-1) ?? '-t'] === true;
  const paths = operands.map((w) => pathOperand(w, program));
  if (paths.includes('-')) throw new CommandError('standard input is not read here: name each file', program);
  if (paths.length > MAX_PATHS) throw new CommandError(`at most ${MAX_PATHS} files at a time`, program);
  return { program, algorithm, paths, binary };
}

export interface CommandIo {
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
}

/**
 * Runs `cmd` as coreutils would: a line `HASH  NAME` on stdout for each file,
 * `PROGRAM: NAME: why` on stderr for each that could not be hashed, and the
 * exit status (0: all hashed, 1: not). With no file, the hash of the standard
 * input once it ends empty (rclone's probe); input with bytes is refused, as
 * hashing what a client streams would be CPU for nothing on record.
 */
export async function runHashCommand(cmd: HashCommand, session: Session, io: CommandIo): Promise<number> {
  if (cmd.paths.length === 0) {
    if (!(await endsEmpty(io.stdin))) {
      io.stderr.write(`${cmd.program}: standard input is not read here: name each file\n`);
      return 1;
    }
    io.stdout.write(`${createHash(cmd.algorithm).digest('hex')}${separator(cmd)}-\n`);
    return 0;
  }
  io.stdin.resume();
  let status = 0;
  for (const path of cmd.paths) {
    try {
      const sum = await session.checksum(path, WHOLE_FILE, cmd.algorithm);
      io.stdout.write(`${line((sum.digests[0] as Buffer).toString('hex'), cmd, path)}\n`);
    } catch (err) {
      if (!(err instanceof SluiceError)) throw err;
      io.stderr.write(`${cmd.program}: ${shown(path)}: ${err.message}\n`);
      status = 1;
    }
  }
  return status;
}

/**
 * Pure: a file's line as coreutils prints it, the name as the client wrote it. A name with a
 * backslash is escaped as coreutils escapes it (the line starts with `\`, each `\` doubled), so
 * that `md5sum -c` and rclone read it back as given; a line break, which coreutils escapes too,
 * never gets here: the session refuses control characters, so no line can read as another file's.
 */
function line(hex: string, cmd: HashCommand, path: string): string {
  return path.includes('\\') ? `\\${hex}${separator(cmd)}${path.replaceAll('\\', '\\\\')}` : `${hex}${separator(cmd)}${path}`;
}

/** Pure: what coreutils writes between a hash and its name: a space, then `*` in binary mode or a space in text mode. */
function separator(cmd: HashCommand): string {
  return cmd.binary ? ' *' : '  ';
}

/** Whether `input` ends before any byte comes (a channel closed before its end counts as ended: nothing reads the answer). */
function endsEmpty(input: Readable): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (empty: boolean) => {
      input.off('data', onData).off('end', onEnd).off('close', onEnd);
      if (!empty) input.resume();
      resolve(empty);
    };
    const onData = () => done(false);
    const onEnd = () => done(true);
    input.on('data', onData).on('end', onEnd).on('close', onEnd);
  });
}
