import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import net from 'node:net';

/** The EICAR test file: every scanner's agreed harmless "virus". */
export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
/** The name our own signature gives it (clamd adds .UNOFFICIAL to signatures outside its official databases). */
export const EICAR_SIGNATURE = 'Sluice.Test.EICAR.UNOFFICIAL';

/** clamd, or why it cannot run here. */
function clamdMissing(): string | null {
  return spawnSync('sh', ['-c', 'command -v clamd'], { encoding: 'utf8' }).status === 0 ? null : 'clamd is not installed (.ci/run installs clamav-daemon)';
}

/** A started clamd; without clamd installed, a failure in CI and elsewhere `t` (a hook's context) skipped (null). */
export async function startedClamd(t: object, options: ClamdOptions = {}): Promise<Clamd | null> {
  const missing = clamdMissing();
  if (missing) {
    if (process.env.CI) throw new Error(`clamd must be installed in CI: ${missing}`);
    if ('skip' in t && typeof t.skip === 'function') t.skip(missing);
    return null;
  }
  const clamd = new Clamd(options);
  await clamd.start();
  return clamd;
}

export interface ClamdOptions {
  /** clamd's StreamMaxLength (an INSTREAM longer than this is refused with "... ERROR"), e.g. '1M'; clamd's default (100M) otherwise. */
  streamMaxLength?: string;
}

/**
 * A real clamd on a private unix socket, with a one-signature database the
 * test writes itself (no signature downloads here): the MD5 of the EICAR file.
 */
export class Clamd {
  readonly dir = mkdtempSync(join(tmpdir(), 'sluice-clamd-'));
  readonly socket = join(this.dir, 'clamd.sock');
  /** clamd's own log (LogFile). */
  readonly logFile = join(this.dir, 'clamd.log');
  private proc: ChildProcess | null = null;

  constructor(private readonly options: ClamdOptions = {}) {}

  /** What clamd logged so far. */
  log(): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8') : '';
  }

  async start(): Promise<void> {
    const db = join(this.dir, 'db');
    mkdirSync(db, { recursive: true });
    const md5 = createHash('md5').update(EICAR).digest('hex');
    writeFileSync(join(db, 'sluice-test.hdb'), `${md5}:${Buffer.byteLength(EICAR)}:Sluice.Test.EICAR\n`);
    const conf = join(this.dir, 'clamd.conf');
    const lines = [`LocalSocket ${this.socket}`, `DatabaseDirectory ${db}`, 'Foreground yes', `PidFile ${join(this.dir, 'clamd.pid')}`, `LogFile ${this.logFile}`, 'LogVerbose yes'];
    if (this.options.streamMaxLength) lines.push(`StreamMaxLength ${this.options.streamMaxLength}`);
    writeFileSync(conf, [...lines, ''].join('\n'));
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

/**
 * A clamd that answers every INSTREAM "stream: OK" `delayMs` after it got it
 * whole; counts the streams it got whole, and the most it held unanswered
 * at once (peak: the uploads at the scanner together). With `threads`, as clamd's
 * MaxThreads, it scans that many at once and the rest in the order they came,
 * each `delayMs` once its turn comes: a clamd at its capacity. `found`: the
 * signature it finds in every stream instead; `held`: no stream is answered
 * until answerHeld(), then all at once, or those whose bytes it picks.
 */
export class SlowClamd {
  readonly dir = mkdtempSync(join(tmpdir(), 'sluice-slow-clamd-'));
  readonly socket = join(this.dir, 'clamd.sock');
  /** Streams received whole (their verdict is then pending). */
  streams = 0;
  /** The most streams held whole and unanswered at once. */
  peak = 0;
  private unanswered = 0;
  private readonly server: net.Server;
  private readonly open = new Set<net.Socket>();
  /** When each thread is free again (threads only). */
  private readonly freeAt: number[];

  /** Answers kept back (held) until answerHeld(), with the bytes of their streams. */
  private held: { data: Buffer; answer: () => void }[] = [];

  constructor(
    readonly delayMs: number,
    threads = Infinity,
    private readonly options: { found?: string; held?: boolean } = {},
  ) {
    this.freeAt = Number.isFinite(threads) ? Array<number>(threads).fill(0) : [];
    this.server = net.createServer((c) => {
      this.open.add(c);
      c.on('close', () => this.open.delete(c));
      c.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      const data: Buffer[] = [];
      let command = false;
      let whole = false;
      c.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (!command) {
          const i = buf.indexOf(0);
          if (i < 0) return;
          buf = buf.subarray(i + 1);
          command = true;
        }
        while (!whole && buf.length >= 4) {
          const n = buf.readUInt32BE(0);
          if (n === 0) {
            whole = true;
            this.streams++;
            this.peak = Math.max(this.peak, ++this.unanswered);
            const answer = (): void => {
              this.unanswered--;
              c.end(this.options.found === undefined ? 'stream: OK\0' : `stream: ${this.options.found} FOUND\0`);
            };
            if (this.options.held) this.held.push({ data: Buffer.concat(data), answer });
            else setTimeout(answer, this.answerIn()).unref();
            return;
          }
          if (buf.length < 4 + n) return;
          data.push(buf.subarray(4, 4 + n));
          buf = buf.subarray(4 + n);
        }
      });
    });
  }

  /** How long until the stream just received is answered: delayMs, after the streams before it when threads are few. */
  private answerIn(): number {
    const now = Date.now();
    if (this.freeAt.length === 0) return this.delayMs;
    const thread = this.freeAt.indexOf(Math.min(...this.freeAt));
    const done = Math.max(now, this.freeAt[thread] as number) + this.delayMs;
    this.freeAt[thread] = done;
    return done - now;
  }

  /** Answers every stream held so far, at once, or those of them whose bytes `pick` takes. */
  answerHeld(pick: (data: Buffer) => boolean = () => true): void {
    const answering = this.held.filter((h) => pick(h.data));
    this.held = this.held.filter((h) => !answering.includes(h));
    for (const h of answering) h.answer();
  }

  start(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.socket, resolve));
  }

  async cleanup(): Promise<void> {
    for (const c of this.open) c.destroy();
    await new Promise((resolve) => this.server.close(resolve));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
