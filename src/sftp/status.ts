import type { SluiceError } from '../session/errors.js';
import { STATUS, type StatusCode } from './codec.js';

/** The one mapping from the shared layer's typed errors to SFTP status codes. */
export function statusFor(err: SluiceError): { code: StatusCode; message: string } {
  const message = err.message;
  switch (err.kind) {
    case 'not-found':
    // As OpenSSH's errno_to_portable() answers ENOTDIR (with ENOENT, ELOOP and EBADF): `f/` of a file, `f/x`,
    // OPENDIR or RMDIR of a file. FAILURE told clients something went wrong where nothing by that name is there
    // to act on, where OpenSSH's sftp says `File "f/" not found` for `get f/` from its own server.
    case 'not-a-directory':
    // EBADF: OpenSSH's sftp-server answers so a WRITE or copy-data into a handle it opened without WRITE, and a
    // READ or copy-data from one it opened WRITE without READ.
    case 'not-open-for':
      return { code: STATUS.NO_SUCH_FILE, message };
    case 'permission-denied':
      return { code: STATUS.PERMISSION_DENIED, message };
    case 'unsupported':
      return { code: STATUS.OP_UNSUPPORTED, message };
    // As errno_to_portable() answers EINVAL: READLINK of what is no link (of `ld/` too, the directory it leads to).
    case 'invalid-argument':
      return { code: STATUS.BAD_MESSAGE, message };
    case 'quota-exceeded':
    case 'already-exists':
    case 'not-empty':
    case 'invalid-path':
    case 'is-a-directory':
    case 'no-space':
    case 'rejected':
    case 'failure':
      // SFTP v3 has no finer codes; the text says which.
      return { code: STATUS.FAILURE, message };
    default: {
      const never: never = err.kind;
      return never;
    }
  }
}
