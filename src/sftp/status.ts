import type { SluiceError } from '../session/errors.js';
import { STATUS, type StatusCode } from './codec.js';

/** The one mapping from the shared layer's typed errors to SFTP status codes. */
export function statusFor(err: SluiceError): { code: StatusCode; message: string } {
  const message = err.message;
  switch (err.kind) {
    case 'not-found':
      return { code: STATUS.NO_SUCH_FILE, message };
    case 'permission-denied':
      return { code: STATUS.PERMISSION_DENIED, message };
    case 'unsupported':
      return { code: STATUS.OP_UNSUPPORTED, message };
    case 'quota-exceeded':
    case 'already-exists':
    case 'not-empty':
    case 'invalid-path':
    case 'not-a-directory':
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
