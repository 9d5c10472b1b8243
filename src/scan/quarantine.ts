import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { QuarantineStore } from '../session/scanning.js';

/**
 * Infected uploads, kept for the administrator in a directory outside every
 * home: DIR/USER/TIME-RANDOM-NAME, owner-only. The name keeps the upload's
 * last component for whoever looks; the random part keeps two from meeting.
 */
export class QuarantineDir implements QuarantineStore {
  constructor(private readonly dir: string) {}

  async keep(source: Readable, info: { user: string; path: string }): Promise<string> {
    const dir = join(this.dir, info.user);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const stamp = new Date().toISOString().replace(/[:.]/g, '');
    const file = join(dir, `${stamp}-${randomBytes(4).toString('hex')}-${basename(info.path)}`);
    await pipeline(source, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
    return file;
  }
}
