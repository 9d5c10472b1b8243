import { promises as fsp } from 'node:fs';
import { join } from 'node:path';

/**
 * Of the private key files `names` in `dir`, those that others than the
 * owner may read or write, with their modes. sshd ignores such a host key
 * ("UNPROTECTED PRIVATE KEY FILE"); sluice makes its own keys 0600 and serves
 * with keys an administrator put in place as they are, but says so at each
 * start (found by a review: keys at 0644 were served without a word).
 */
export async function exposedKeys(dir: string, names: readonly string[]): Promise<{ file: string; mode: string }[]> {
  const exposed: { file: string; mode: string }[] = [];
  for (const name of names) {
    const file = join(dir, name);
    const mode = (await fsp.stat(file).catch(() => null))?.mode;
    if (mode !== undefined && (mode & 0o077) !== 0) exposed.push({ file, mode: (mode & 0o7777).toString(8).padStart(4, '0') });
  }
  return exposed;
}
