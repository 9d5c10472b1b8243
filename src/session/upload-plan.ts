import type { NodeType } from './storage/storage.js';

/** What a client asked of an upload (SFTP OPEN flags, FTP STOR/APPE/STOU/REST). */
export interface UploadRequest {
  /** Start writing here (resume); absent: 0. */
  offset?: number;
  /** Every write goes to the end of the file. */
  append: boolean;
  /** Fail if the name exists. */
  exclusive: boolean;
  /** Do not create a missing file. */
  mustExist: boolean;
  /** Empty an existing file first; absent: only when writing from 0 without appending. */
  truncate?: boolean;
}

/** What is at the name now; null when nothing is. */
export interface ExistingNode {
  type: NodeType;
  size: number;
  nlink: number;
}

export interface UploadSetting {
  /** Fresh uploads go to a staged file that replaces the target only when complete. */
  atomicUploads: boolean;
  /** The user may not learn whether the name exists (a drop box). */
  blind: boolean;
  /** Uploads are scanned before they take their name: only whole, staged ones can be. */
  scanned: boolean;
}

export interface UploadPlan {
  /** Where the first byte goes; for an append, the end of the existing file. */
  offset: number;
  truncate: boolean;
  append: boolean;
  /** Written to a staged file that replaces the name at the end. */
  atomic: boolean;
  /** Bytes that exist are written over: the overwrite permission is needed. */
  needsOverwrite: boolean;
  /** A new name: it takes a slot of the file quota. */
  createsFile: boolean;
  /**
   * A staged file may, at its end, replace a file that took the name since the
   * look: not for an exclusive create, nor for a new name opened without
   * truncation (the client asked to keep what is there, so what appeared is kept).
   */
  mayReplace: boolean;
}

export type UploadRefusal =
  | 'is-a-directory'
  | 'not-a-file'
  | 'already-exists'
  | 'not-found'
  /** Anything but a create or a whole replacement would tell what exists. */
  | 'unseen'
  /** A hard-linked file is never changed where it lies: that would change it under its other names. */
  | 'linked-elsewhere'
  /** A scanned upload must be whole and staged: bytes written in place would be there unscanned. */
  | 'scan-needs-whole'
  | 'beyond-end';

/**
 * Pure: the whole decision of how an upload writes, or why it may not.
 * Where the user may not learn which names exist, a write may only create a
 * file or replace one whole: resuming, appending or opening without creating
 * would tell that a name exists and how long it is. A file with another name
 * is replaced whole (which gives this name a new file) or not at all.
 * Writing over bytes that exist needs overwrite; growing a file at its end is
 * an upload.
 */
export function planUpload(existing: ExistingNode | null, request: UploadRequest, setting: UploadSetting): UploadPlan | { refused: UploadRefusal } {
  if (existing && existing.type !== 'file') return { refused: existing.type === 'dir' ? 'is-a-directory' : 'not-a-file' };
  if (existing && request.exclusive) return { refused: 'already-exists' };
  if (!existing && request.mustExist) return { refused: 'not-found' };
  const { append } = request;
  const size = existing?.size ?? 0;
  // Appending is resuming at the end: the record says from where. An append to a file emptied first
  // (SFTP APPEND|TRUNC, O_APPEND|O_TRUNC) starts at 0: it writes the whole file, and its record and
  // hash say so (found by a review: recorded as resumed at the old size, with no hash, though whole).
  const offset = append ? (request.truncate === true ? 0 : size) : (request.offset ?? 0);
  const asked = request.truncate ?? (offset === 0 && !append);
  // Nothing at the name: nothing to keep in place. Written from the start without truncation (OpenSSH 9's
  // scp opens WRITE|CREAT, no TRUNC) it is a whole new file, planned as a truncating open's: staged, scannable.
  const truncate = asked || (existing === null && offset === 0 && !append);
  if (setting.blind && (offset !== 0 || request.mustExist || (existing !== null && !truncate))) return { refused: 'unseen' };
  // A scanned upload is staged whatever uploads.atomic says: in place its bytes would be there unscanned, and
  // refused (scan-needs-whole), a user scanned by its own setting on a server with atomic: false could upload nothing.
  const atomic = (setting.atomicUploads || setting.scanned) && truncate;
  if (existing && existing.nlink > 1 && !atomic) return { refused: 'linked-elsewhere' };
  if (setting.scanned && !atomic) return { refused: 'scan-needs-whole' };
  if (offset < 0 || offset > size) return { refused: 'beyond-end' };
  return {
    offset,
    truncate,
    append,
    atomic,
    needsOverwrite: existing !== null && (truncate || (!append && offset < existing.size)),
    createsFile: existing === null,
    mayReplace: asked && !request.exclusive,
  };
}
