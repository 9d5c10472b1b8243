import type { Stats } from 'node:fs';

export type FileType = 'file' | 'dir' | 'symlink' | 'other';

/** Protocol-neutral metadata; front-ends turn it into LIST lines, MLSD facts or SFTP attrs. */
export interface FileInfo {
  readonly name: string;
  readonly type: FileType;
  readonly size: number;
  /** Full st_mode, file-type bits included. */
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly mtime: Date;
  readonly atime: Date;
  /** Stable identity for MLSD `unique`. */
  readonly ino: number;
  readonly dev: number;
  /**
   * A symlink's target as the user may see it (listings only): its text when
   * relative, the virtual path when it names a place in the home; absent when
   * it leads outside the home or is not a clean path. Never a host path.
   */
  readonly target?: string;
}

export function toFileInfo(name: string, st: Stats): FileInfo {
  const type: FileType = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
  return {
    name,
    type,
    size: st.size,
    mode: st.mode,
    nlink: st.nlink,
    uid: st.uid,
    gid: st.gid,
    mtime: st.mtime,
    atime: st.atime,
    ino: st.ino,
    dev: st.dev,
  };
}
