import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Endpoint } from './peers.js';

/** Both SSH servers are asked for the same cipher, so the comparison is of the servers. */
const CIPHER = 'aes128-gcm@openssh.com';

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}: ${stderr.trim()}`))));
  });
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export type Direction = 'upload' | 'download';

/** OpenSSH's sftp client, key login: seconds for one transfer. */
export function sftpTransfer(ep: Endpoint, key: string, work: string, direction: Direction, local: string): Promise<number> {
  const batch = join(work, 'batch');
  writeFileSync(batch, direction === 'upload' ? `put ${local} ${ep.remotePath}\n` : `get ${ep.remotePath} ${local}\n`);
  return timed(() =>
    run('sftp', [
      '-q', '-b', batch, '-i', key, '-P', String(ep.port), '-c', CIPHER,
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes',
      `${ep.user}@127.0.0.1`,
    ]),
  );
}

/** curl, explicit FTPS (AUTH TLS), passive: seconds for one transfer. */
export function ftpsTransfer(ep: Endpoint, direction: Direction, local: string): Promise<number> {
  const url = `ftp://127.0.0.1:${ep.port}${ep.remotePath}`;
  const io = direction === 'upload' ? ['-T', local] : ['-o', local];
  return timed(() => run('curl', ['-sS', '-k', '--ssl-reqd', '-u', `${ep.user}:${ep.password ?? ''}`, ...io, url]));
}
