import type { FileInfo } from '../session/file-info.js';
import { listLine } from '../listing/ls.js';
import type { Attrs } from './codec.js';

/**
 * Attributes as clients expect them: whole seconds (uint32), mode with its
 * file-type bits. Owner ids are zero: server uids are nobody's business, and
 * the longname shows fixed names likewise.
 */
export function toAttrs(info: FileInfo): Attrs {
  return {
    size: info.size,
    uid: 0,
    gid: 0,
    permissions: info.mode,
    atime: Math.floor(info.atime.getTime() / 1000) >>> 0,
    mtime: Math.floor(info.mtime.getTime() / 1000) >>> 0,
  };
}

/** The `ls -l` line FileZilla and WinSCP parse from READDIR (first character: the type). */
export function longname(info: FileInfo, now: Date): string {
  return listLine(info, now);
}
