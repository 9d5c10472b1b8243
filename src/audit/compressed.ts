/**
 * A rotated file whose compression is broken (cut short in a copy, bytes
 * altered on disk): none of its lines can be trusted, but the files beside
 * it can still be read, so it is reported as part of the trail's state and
 * not as a mistake in the command.
 */
export class DamagedFile extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

/**
 * The DamagedFile that `err`, thrown while `file` was gunzipped as it
 * streamed, says it is; null when it is
 * something else, for the caller to throw.
 */
export function damageOf(file: string, err: unknown): DamagedFile | null {
  // zlib's codes are the only thing telling damage from the rest (memory, a result too large for a Buffer).
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'Z_BUF_ERROR') return new DamagedFile(file, 'compressed file is cut short or damaged (unexpected end of gzip data)');
  if (code === 'Z_DATA_ERROR') return new DamagedFile(file, `compressed file is damaged or not gzip (${(err as Error).message})`);
  return null;
}
