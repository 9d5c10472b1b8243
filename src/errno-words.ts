/**
 * A failed file-system call in the words an operator reads: libuv's own text
 * ("EACCES: permission denied, open '/srv/data/sluice.db'", "EISDIR: illegal
 * operation on a directory") leads with the errno and repeats the call.
 * Messages name the file themselves. A code without words here is given as
 * it is, and an error without one by its message.
 */
const WORDS: Readonly<Record<string, string>> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a directory above it is a file',
  EISDIR: 'it is a directory',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  ENAMETOOLONG: 'name too long',
  ELOOP: 'too many symbolic links',
  EMFILE: 'too many open files',
  EIO: 'input/output error',
  // open(2) of a FIFO without a reader (O_NONBLOCK), a socket, a device without its driver.
  ENXIO: 'not a regular file',
};

export function errnoWords(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return (code === undefined ? undefined : WORDS[code]) ?? code ?? (err instanceof Error ? err.message : String(err));
}
