import type { NodeStat } from './storage/storage.js';

/** Protocol-neutral metadata of a named node; front-ends turn it into LIST lines, MLSD facts or SFTP attrs. */
export interface FileInfo extends NodeStat {
  readonly name: string;
  /**
   * A symlink's target as the user may see it (listings, lstat): its text when
   * relative, the virtual path when it names a place in the home; absent when
   * it leads outside the home or is not a clean path. Never a host path.
   */
  readonly target?: string;
}

export function toFileInfo(name: string, st: NodeStat): FileInfo {
  return { name, ...st };
}

/**
 * A symlink as the user may see it: its target as visibleLinkTarget gives
 * it (null: hidden), and a size that is that target's length in bytes, or 0.
 * The file system's size is the length of the link's own text, an absolute
 * host path for a link into the home (34 for /tmp/.../homes/alice/sub),
 * which told a user how long the server's paths are, and for a link out of
 * it the length of what it hid (found by a review).
 */
export function linkInfo(info: FileInfo, target: string | null): FileInfo {
  const { target: _stale, ...rest } = info;
  return target === null ? { ...rest, size: 0 } : { ...rest, size: Buffer.byteLength(target), target };
}
