import type { NodeStat } from './storage/storage.js';

/** Protocol-neutral metadata of a named node; front-ends turn it into LIST lines, MLSD facts or SFTP attrs. */
export interface FileInfo extends NodeStat {
  readonly name: string;
  /**
   * A symlink's target as the user may see it (listings only): its text when
   * relative, the virtual path when it names a place in the home; absent when
   * it leads outside the home or is not a clean path. Never a host path.
   */
  readonly target?: string;
}

export function toFileInfo(name: string, st: NodeStat): FileInfo {
  return { name, ...st };
}
