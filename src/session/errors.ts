/**
 * Typed errors of the shared layer. Front-ends map `kind` to their own reply
 * codes with an exhaustive switch; `message` is always a fixed, client-safe
 * text, never an errno message (those carry real server paths). errno
 * becomes a kind in one place, at the storage boundary (storage/errno.ts).
 */
export type ErrorKind =
  | 'not-found'
  | 'permission-denied'
  | 'quota-exceeded'
  | 'already-exists'
  | 'not-empty'
  | 'invalid-path'
  /** The file system's EINVAL: what was asked means nothing for that node (READLINK of no link, a directory moved into itself). */
  | 'invalid-argument'
  /**
   * The file system's EBADF: asked through an open file for what its open did not ask for (a write
   * through a download, or through an SFTP OPEN without WRITE that emptied or created the file; a
   * read through an SFTP OPEN with WRITE and without READ). Not a right refused: that is permission-denied.
   */
  | 'not-open-for'
  | 'not-a-directory'
  | 'is-a-directory'
  | 'no-space'
  | 'unsupported'
  /** Refused by a check of the content (the malware scanner), or because none could be made. */
  | 'rejected'
  | 'failure';

const MESSAGES: Record<ErrorKind, string> = {
  'not-found': 'No such file or directory',
  'permission-denied': 'Permission denied',
  'quota-exceeded': 'Quota exceeded',
  'already-exists': 'File exists',
  'not-empty': 'Directory not empty',
  'invalid-path': 'Invalid path',
  'invalid-argument': 'Invalid argument',
  'not-open-for': 'Handle not open for that',
  'not-a-directory': 'Not a directory',
  'is-a-directory': 'Is a directory',
  'no-space': 'No space left on device',
  unsupported: 'Operation not supported',
  rejected: 'Upload rejected',
  failure: 'Operation failed',
};

export class SluiceError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string = MESSAGES[kind],
    /** Server-side detail for logs only; never sent to a client. */
    readonly detail?: string,
  ) {
    // Only a failure of ours is ever debugged. The other kinds are answers (a name that is not there
    // yet, a denied path): with its stack, one cost about 10 µs of the event loop, and every upload
    // of a new file makes one when it looks for the file it would replace.
    const limit = Error.stackTraceLimit;
    if (kind !== 'failure') Error.stackTraceLimit = 0;
    try {
      super(message);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.name = 'SluiceError';
  }
}

/**
 * A path past a bound: the client's (paths.ts) or the kernel's, ENAMETOOLONG
 * (storage/errno.ts), as for the text of a link deep down to a place near the
 * top, `../` a level, which passes PATH_MAX where neither path does.
 */
export function pathTooLong(detail?: string): SluiceError {
  return new SluiceError('invalid-path', 'Path too long', detail);
}

/** A write through a file not opened for writing: a download's, or an upload's opened without WRITE (WriteOptions.write). */
export function notOpenForWriting(): SluiceError {
  return new SluiceError('not-open-for', 'Handle not open for writing');
}

/** A read through a file not opened for reading: an upload's opened WRITE without READ (WriteOptions.read). */
export function notOpenForReading(): SluiceError {
  return new SluiceError('not-open-for', 'Handle not open for reading');
}

/** A size change through such a file (see notOpenForWriting): ftruncate(2) answers EINVAL, not EBADF. */
export function sizeNotWritable(): SluiceError {
  return new SluiceError('invalid-argument', 'Handle not open for writing');
}

/** What a request of a session that has ended gets, from whichever step notices. */
export function sessionClosed(): SluiceError {
  return new SluiceError('failure', 'Session is closed');
}

/**
 * A SluiceError as it is; anything else reaching the session's edge is a
 * failure of ours, never a client's fault, and says nothing more to one.
 * Storage translated errno already (storage/errno.ts, the only place).
 */
export function toSluiceError(err: unknown): SluiceError {
  return err instanceof SluiceError ? err : new SluiceError('failure', undefined, String(err));
}

/**
 * The one answer about a name in a directory where the user may not learn
 * which names exist: always the same kind and text, whatever really went
 * wrong (not found, not a directory, exists, beyond the end...). The real
 * cause stays in `detail`, for the log.
 */
export class Unseen extends SluiceError {
  constructor(cause?: unknown) {
    const e = cause === undefined ? null : toSluiceError(cause);
    const why = e ? `${e.kind}${e.detail ? ` (${e.detail})` : ''}` : 'hidden name';
    super('permission-denied', MESSAGES['permission-denied'], `unseen: ${why}`);
  }
}

/**
 * A request's directory is no longer where its path says, which its rights
 * were checked on: another request moved it meanwhile (see Session's inPlace).
 */
export function movedMeanwhile(): SluiceError {
  return new SluiceError('failure', 'A directory was moved meanwhile; try again', 'a directory on the way was moved while the request ran');
}
