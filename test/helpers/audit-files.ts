import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuditLog, type AuditLogOptions } from '../../src/audit/log.js';

export type Rec = Record<string, unknown> & { seq: number; event: string };

/** A server's directory `name` under `dir`, its data directory made: `sluice audit` run in `root` reads `file` and its rotated files. */
export function freshRoot(dir: string, name: string): { root: string; data: string; file: string } {
  const root = join(dir, name);
  mkdirSync(join(root, 'data'), { recursive: true });
  return { root, data: join(root, 'data'), file: join(root, 'data', 'audit.log') };
}

/** The trail's writer on `file`, as the server opens it (no rotation or retention unless given), its errors collected. */
export async function openAuditLog(file: string, options: Partial<AuditLogOptions> = {}): Promise<{ log: AuditLog; errors: string[] }> {
  const errors: string[] = [];
  const log = await AuditLog.open({ file, node: 'n1', rotateSize: 0, keep: { count: 0, days: 0 }, xferlog: null, onError: (e) => errors.push(e.message), ...options });
  return { log, errors };
}

export const recordsOf = (file: string): Rec[] =>
  readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Rec);
