/**
 * Typed errors of the shared layer. Front-ends map `kind` to their own reply
 * codes with an exhaustive switch; `message` is always a fixed, client-safe
 * text, never an errno message (those carry real server paths).
 */
export type ErrorKind =
  | 'not-found'
  | 'permission-denied'
  | 'quota-exceeded'
  | 'already-exists'
  | 'not-empty'
  | 'invalid-path'
  | 'not-a-directory'
  | 'is-a-directory'
  | 'no-space'
  | 'unsupported'
  | 'failure';

const MESSAGES: Record<ErrorKind, string> = {
  'not-found': 'No such file or directory',
  'permission-denied': 'Permission denied',
  'quota-exceeded': 'Quota exceeded',
  'already-exists': 'File exists',
  'not-empty': 'Directory not empty',
  'invalid-path': 'Invalid path',
  'not-a-directory': 'Not a directory',
  'is-a-directory': 'Is a directory',
  'no-space': 'No space left on device',
  unsupported: 'Operation not supported',
  failure: 'Operation failed',
};

export class SluiceError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string = MESSAGES[kind],
    /** Server-side detail for logs only; never sent to a client. */
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'SluiceError';
  }
}

const ERRNO_KINDS: Readonly<Record<string, ErrorKind>> = {
  ENOENT: 'not-found',
  EACCES: 'permission-denied',
  EPERM: 'permission-denied',
  EROFS: 'permission-denied',
  ELOOP: 'permission-denied',
  EEXIST: 'already-exists',
  ENOTEMPTY: 'not-empty',
  ENOTDIR: 'not-a-directory',
  EISDIR: 'is-a-directory',
  ENOSPC: 'no-space',
  EDQUOT: 'no-space',
  ENAMETOOLONG: 'invalid-path',
  EINVAL: 'invalid-path',
  EXDEV: 'unsupported',
  ENOTSUP: 'unsupported',
  EOPNOTSUPP: 'unsupported',
};

/** The only errno translation in the code base. */
export function fromErrno(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const kind = (code && ERRNO_KINDS[code]) || 'failure';
  return new SluiceError(kind, MESSAGES[kind], code ?? String(err));
}

export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/**
 * The one answer about a name in a directory where the user may not learn
 * which names exist: always the same kind and text, whatever really went
 * wrong (not found, not a directory, exists, beyond the end...). The real
 * cause stays in `detail`, for the log.
 */
export class Unseen extends SluiceError {
  constructor(cause?: unknown) {
    const e = cause === undefined ? null : fromErrno(cause);
    const why = e ? `${e.kind}${e.detail ? ` (${e.detail})` : ''}` : 'hidden name';
    super('permission-denied', MESSAGES['permission-denied'], `unseen: ${why}`);
  }
}
