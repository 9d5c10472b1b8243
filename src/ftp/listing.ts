import { Readable } from 'node:stream';
import { listLine } from '../listing/ls.js';
import type { FileInfo } from '../session/file-info.js';
import { baseName } from '../session/paths.js';
import type { Session } from '../session/session.js';
import type { FtpControl } from './control.js';
import { pump } from './data-channel/pump.js';
import { runTransfer } from './data-channel/runner.js';

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

async function listed(s: Session, path: string): Promise<{ entries: Entries; dir: boolean }> {
  const info = await s.stat(path || '.');
  if (info.type !== 'dir') return { entries: (async function* () { yield { ...info, name: baseName(s.resolve(path)) }; })(), dir: false };
  return { entries: await s.list(path || '.'), dir: true };
}

/**
 * NLST's entries of `path` as the client gave it ('' for none), each line a
 * path the client can give back from where it is, as vsftpd sends them: the
 * names of a directory it named after that name, a file as named. Bare names were taken for files of the working directory by a
 * client acting on each line NLST sends (classic ftp's `mget dir`, and its
 * `mdelete dir`, which deleted them).
 */
export async function nameList(s: Session, path: string): Promise<{ entries: Entries; line: (f: FileInfo) => string }> {
  const { entries, dir } = await listed(s, path);
  if (!dir) return { entries, line: () => path };
  const prefix = path === '' ? '' : `${path.replace(/\/+$/, '')}/`;
  return { entries, line: (f) => prefix + f.name };
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
