import { SluiceError, pathTooLong, type ErrorKind } from '../errors.js';

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
  EINVAL: 'invalid-argument',
  EXDEV: 'unsupported',
  ENOTSUP: 'unsupported',
  EOPNOTSUPP: 'unsupported',
};

/**
 * The only errno translation: every file-system call of the local storage
 * ends here when it fails. The errno message (it names real paths) stays in
 * `detail`, for the log.
 */
export function fromErrno(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const code = errnoCode(err);
  // Told as every over-long path is: 'Invalid path' said nothing of what to change.
  if (code === 'ENAMETOOLONG') return pathTooLong(code);
  // What open(2) says of a socket, a device without its driver, or a FIFO without a reader opened to write:
  // none is a regular file, as a FIFO opened and looked at is told; 'failure' told FTP clients to try again (451).
  if (code === 'ENXIO') return new SluiceError('permission-denied', 'Not a regular file', code);
  const kind = (code && ERRNO_KINDS[code]) || 'failure';
  return new SluiceError(kind, undefined, code ?? String(err));
}

export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** Await a file-system call; its failure leaves typed. */
export async function sys<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    throw fromErrno(err);
  }
}
