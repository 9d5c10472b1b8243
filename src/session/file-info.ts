import type { NodeStat } from './storage/storage.js';

/** Protocol-neutral metadata of a named node; front-ends turn it into LIST lines, MLSD facts or SFTP attrs. */
export interface FileInfo extends NodeStat {
  readonly name: string;
}

export function toFileInfo(name: string, st: NodeStat): FileInfo {
  return { name, ...st };
}
