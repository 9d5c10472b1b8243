import { Readable } from 'node:stream';
import { listLine } from '../listing/ls.js';
import type { FileInfo } from '../session/file-info.js';
import { SluiceError } from '../session/errors.js';
import { baseName } from '../session/paths.js';
import type { Session } from '../session/session.js';
import type { FtpControl } from './control.js';
import { pump } from './data-channel/pump.js';
import { runTransfer } from './data-channel/runner.js';
import { NameGlob } from './glob.js';

/** What LIST, NLST, MLSD and STAT walk: a directory's entries, or one file. */
type Entries = AsyncIterable<FileInfo> & { close?(): Promise<void> };

/** LIST/NLST options (`-la`) come before the path; everything after them is the path, verbatim. */
export function splitListArgs(arg: string): { flags: string; path: string } {
  let rest = arg;
  let flags = '';
  for (;;) {
    const m = /^(-[A-Za-z1]+)(?:\s+|$)/.exec(rest);
    if (!m) break;
    flags += (m[1] as string).slice(1);
    rest = rest.slice(m[0].length);
  }
  return { flags, path: rest };
}

/** Entries to list for a path ('' for the working directory): the directory's entries, or the file itself. */
export async function entries(s: Session, path: string): Promise<Entries> {
  return (await listed(s, path)).entries;
}

/**
 * What `path` lists: a directory's entries, a file, or, when no entry has
 * that name and its last component is a wildcard (`*.csv`), the entries of
 * the directory before it that match. `within`: the path as given that the
 * entries' names follow, for NLST ('' or ending in one `/`, or in several a
 * wildcard's directory was given with); null for a file, named by `path` itself.
 */
async function listed(s: Session, path: string): Promise<{ entries: Entries; within: string | null }> {
  let info: FileInfo;
  try {
    info = await s.stat(path || '.');
  } catch (err) {
    const cut = path.lastIndexOf('/') + 1;
    const glob = NameGlob.of(path.slice(cut));
    if (glob === null || !(err instanceof SluiceError) || err.kind !== 'not-found') throw err;
    const dir = path.slice(0, cut);
    return { entries: matching(await s.list(dir || '.'), glob), within: dir };
  }
  if (info.type !== 'dir') return { entries: (async function* () { yield { ...info, name: baseName(s.resolve(path)) }; })(), within: null };
  return { entries: await s.list(path || '.'), within: path === '' ? '' : path.replace(/\/*$/, '/') };
}

function matching(list: Entries, glob: NameGlob): Entries {
  return {
    async *[Symbol.asyncIterator]() {
      for await (const f of list) if (glob.matches(f.name)) yield f;
    },
    close: () => list.close?.() ?? Promise.resolve(),
  };
}

/**
 * NLST's entries of `path` as the client gave it ('' for none), each line a
 * path the client can give back from where it is, as vsftpd sends them: the
 * names of a directory it named after that name, a file as named. Bare
 * names were taken for files of the working directory by a client acting on
 * each line NLST sends (classic ftp's `mget dir`, and its `mdelete dir`,
 * which deleted them).
 */
export async function nameList(s: Session, path: string): Promise<{ entries: Entries; line: (f: FileInfo) => string }> {
  const { entries, within } = await listed(s, path);
  return { entries, line: within === null ? () => path : (f) => within + f.name };
}

/** LIST and STAT lines: `ls -l`, a symlink followed by `-> target` as vsftpd and Pure-FTPd send it. */
export function ftpListLine(info: FileInfo, now: Date): string {
  return listLine(info, now, { linkTarget: true });
}

/**
 * STAT <path>'s reply, a line at a time: its LIST lines between a heading
 * and an end. The source is closed however far the lines are taken.
 */
export async function* statLines(path: string, source: Entries): AsyncGenerator<string> {
  try {
    yield `Status of ${path}:`;
    const now = new Date();
    for await (const f of source) yield ftpListLine(f, now);
    yield 'End of status.';
  } finally {
    await source.close?.();
  }
}

/** Send one line per entry over the data connection, then 226. */
export function sendListing(c: FtpControl, source: Entries, format: (f: FileInfo) => string): void {
  runTransfer(c, 'Here comes the directory listing.', null, (data) =>
    pump(
      Readable.from((async function* () {
        for await (const f of source) yield format(f) + '\r\n';
      })()),
      data,
    ),
    () => source.close?.() ?? Promise.resolve(),
  );
}
