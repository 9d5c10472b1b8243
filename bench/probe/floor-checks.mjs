// The calls sluice adds to an atomic upload of a new file, for the floor probes (ftp-floor.mjs,
// sftp-floor.mjs: their `checks` mode): in a directory kept open as sluice's kept chain keeps it, the
// kept directory's and the name's lstat together and the directory's readlink before the staged file is
// made; at the end the hold of the target and the staged file's lstat beside its close, then the rename.
import { constants as C } from 'node:fs';
import { lstat, open, readlink, rename } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

const O_PATH = 0o10000000;
const proc = (fd, name) => (name === undefined ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`);
let staged = 0;

/** The directory of the last upload stays open. */
const kept = { path: '', fh: null };
async function keptDir(path) {
  if (kept.path !== path) {
    await kept.fh?.close();
    kept.fh = await open(path, C.O_RDONLY | C.O_DIRECTORY);
    kept.path = path;
  }
  return kept.fh;
}

/** The staged file of an upload to `final`, after the looks sluice takes: { fh, dir, tmp, base }. */
export async function stageChecked(final) {
  const dir = await keptDir(dirname(final));
  const base = basename(final);
  const tmp = `.floor-${process.pid}-${staged++}`;
  await Promise.all([lstat(dirname(final)), lstat(proc(dir.fd, base)).catch(() => null)]);
  await readlink(proc(dir.fd));
  const fh = await open(proc(dir.fd, tmp), C.O_RDWR | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o644);
  return { fh, dir, tmp, base };
}

/** The end of a stageChecked upload: the staged file closed and renamed over the final name. */
export async function commitChecked({ fh, dir, tmp, base }) {
  const [held] = await Promise.all([
    open(proc(dir.fd, base), C.O_RDONLY | C.O_NOFOLLOW | O_PATH).catch(() => null),
    lstat(proc(dir.fd, tmp)),
    fh.close(),
  ]);
  await rename(proc(dir.fd, tmp), proc(dir.fd, base));
  await held?.close();
}
