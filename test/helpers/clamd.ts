import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

/** The EICAR test file: every scanner's agreed harmless "virus". */
export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
/** The name our own signature gives it (clamd adds .UNOFFICIAL to signatures outside its official databases). */
export const EICAR_SIGNATURE = 'Sluice.Test.EICAR.UNOFFICIAL';

/** clamd, or why it cannot run here. */
function clamdMissing(): string | null {
  return spawnSync('sh', ['-c', 'command -v clamd'], { encoding: 'utf8' }).status === 0 ? null : 'clamd is not installed (.ci/run installs clamav-daemon)';
}

/** A started clamd; without clamd installed, a failure in CI and elsewhere `t` (a hook's context) skipped (null). */
export async function startedClamd(t: object): Promise<Clamd | null> {
  const missing = clamdMissing();
  if (missing) {
    if (process.env.CI) throw new Error(`clamd must be installed in CI: ${missing}`);
    if ('skip' in t && typeof t.skip === 'function') t.skip(missing);
    return null;
  }
  const clamd = new Clamd();
  await clamd.start();
  return clamd;
}

/**
 * A real clamd on a private unix socket, with a one-signature database the
 * test writes itself (no signature downloads here): the MD5 of the EICAR file.
 */
export class Clamd {
  readonly dir = mkdtempSync(join(tmpdir(), 'sluice-clamd-'));
  readonly socket = join(this.dir, 'clamd.sock');
  private proc: ChildProcess | null = null;

  async start(): Promise<void> {
    const db = join(this.dir, 'db');
    mkdirSync(db, { recursive: true });
    const md5 = createHash('md5').update(EICAR).digest('hex');
    writeFileSync(join(db, 'sluice-test.hdb'), `${md5}:${Buffer.byteLength(EICAR)}:Sluice.Test.EICAR\n`);
    const conf = join(this.dir, 'clamd.conf');
    writeFileSync(conf, [`LocalSocket ${this.socket}`, `DatabaseDirectory ${db}`, 'Foreground yes', `PidFile ${join(this.dir, 'clamd.pid')}`, ''].join('\n'));
    this.proc = spawn('clamd', ['-c', conf], { stdio: 'ignore' });
    for (let i = 0; i < 300 && !existsSync(this.socket); i++) await new Promise((r) => setTimeout(r, 100));
    if (!existsSync(this.socket)) throw new Error('clamd did not start within 30 s');
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
    rmSync(this.socket, { force: true });
  }

  async cleanup(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
