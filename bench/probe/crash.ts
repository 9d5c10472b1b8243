/**
 * The power cut: runs the real server, drives FTP and SFTP traffic (whole uploads of small and
 * 5-50 MiB files over earlier ones, APPE and SFTP writes at a file's end, renames, deletes,
 * mkdir/rmdir, `sluice user` changes, a user with a quota), SIGKILLs the server (or, with
 * workers, a worker, or both) at a random moment, starts it again on the same directory, and
 * checks what SECURITY.md promises of a crash:
 *
 * - it starts and serves, with nothing repaired by hand;
 * - every name holds its old content or the whole new one (an append: the old content and a
 *   prefix of what was sent); no name the client did not make, no upload temporary left;
 * - each user's stored usage is what the home holds;
 * - `sluice audit verify` passes; every change the server answered as done more than a second
 *   before the kill has its record; no `ok` upload record names bytes the client did not send whole;
 * - SQLite's integrity_check is ok; a user added or changed by a killed CLI is whole or absent.
 *
 * Not part of `npm test` (random moments, minutes). As root, through the test launcher (the
 * servers run as sluice-test), after `npm run build`:
 *
 *   node build/test/helpers/as-test-user.js --import tsx bench/probe/crash.ts [--iterations 20] [--workers 1|2] [--seed N]
 *
 * Prints one line per iteration, each violation found, and exits 1 if there was any.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import type ssh2 from 'ssh2';
import { BIN, sluice } from '../../test/helpers/cli.js';
import { RawFtp, startUpload } from '../../test/helpers/ftp-raw.js';
import { diskUsage, persistedUsage } from '../../test/helpers/quota.js';
import { TestServer } from '../../test/helpers/server.js';
import { call, sftpOf, sshConnect } from '../../test/helpers/ssh.js';

const { values: opts } = parseArgs({
  options: {
    iterations: { type: 'string', default: '20' },
    workers: { type: 'string', default: '1' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    actors: { type: 'string', default: '4' },
  },
});
const ITERATIONS = Number(opts.iterations);
const WORKERS = Number(opts.workers);
const ACTORS = Number(opts.actors);
const KiB = 1024;
const MiB = 1024 * KiB;
/** How long before the kill an answered change must be on record (README: a crash loses at most the last second). */
const RECORD_MARGIN_MS = 1200;
const PASSWORD = 'crash probe password';
const QUOTA_BYTES = 150 * MiB;
const QUOTA_FILES = 30;

// mulberry32: moments and choices repeat for a seed (contents do not: they are random bytes).
let seed = Number(opts.seed) >>> 0;
function rand(): number {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const debug = (text: string): void => void (process.env.CRASH_DEBUG && console.log(`  [${new Date().toISOString().slice(11, 23)}] ${text}`));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a name holds, as far as the probe knows. */
type State = { kind: 'absent' } | { kind: 'dir' } | { kind: 'file'; sha: string; size: number };
/** What a name may hold after a change the kill cut: a state, or (an append) the old file and a prefix of `add`. */
type Outcome = State | { kind: 'grow'; base: State; add: Buffer; holes: boolean };
const ABSENT: State = { kind: 'absent' };

/** A change the server answered: when, and the record it must have written. */
interface Answered {
  at: number;
  what: string;
  record: (r: Record<string, unknown>) => boolean;
}

/** When this iteration's kill came, once it has. */
let killedAt: number | null = null;
const violations: string[] = [];
function violation(iteration: number, text: string): void {
  violations.push(`#${iteration}: ${text}`);
  console.log(`  VIOLATION: ${text}`);
}

/** One client of one user, doing one change at a time in its own directory. */
class Actor {
  ftp: RawFtp | null = null;
  sftp: ssh2.SFTPWrapper | null = null;
  conn: ssh2.Client | null = null;
  private gone: Promise<never> = new Promise(() => undefined);
  /** The rename under way: cut, it must leave the file under one of its names, not both. */
  renaming: { from: string; to: string } | null = null;
  /** The change under way: the names it touches and what each may hold if it was cut. */
  pending: Map<string, Outcome[]> | null = null;
  /** Full SHA-256s of everything sent to a name, for the `ok` records to be checked against. */
  readonly answered: Answered[] = [];

  constructor(
    readonly user: string,
    readonly dir: string,
    readonly model: Map<string, State>,
    readonly sent: Map<string, Set<string>>,
  ) {}

  names(): string[] {
    return ['f0', 'f1', 'f2', 'f3', 'd'].map((n) => `${this.dir}/${n}`);
  }

  sentTo(path: string): Set<string> {
    return this.sent.get(path) ?? new Set();
  }

  state(path: string): State {
    return this.model.get(path) ?? ABSENT;
  }

  async connect(srv: TestServer): Promise<void> {
    this.ftp = await RawFtp.connect(srv.ftpPort);
    await this.ftp.read();
    const r = await this.ftp.login(this.user, PASSWORD);
    if (r.code !== 230) throw new Error(`FTP login ${this.user}: ${r.text}`);
    await this.ftp.cmd('TYPE I');
    this.conn = await sshConnect({ port: srv.sftpPort, username: this.user, password: PASSWORD });
    this.conn.on('error', () => undefined);
    // ssh2 leaves an SFTP request's callback uncalled when the connection drops: each call races its close.
    this.gone = new Promise((_, reject) => this.conn!.once('close', () => reject(new Error('connection closed'))));
    this.gone.catch(() => undefined);
    this.sftp = await sftpOf(this.conn);
  }

  /** An SFTP request, or its failure when the connection drops first. */
  private req<T = void>(fn: (cb: (err: Error | null | undefined, v?: T) => void) => void): Promise<T> {
    return Promise.race([call<T>(fn), this.gone]);
  }

  close(): void {
    this.ftp?.close();
    this.conn?.destroy();
    this.ftp = null;
    this.sftp = null;
    this.conn = null;
  }

  private content(): Buffer {
    return rand() < 0.2 ? randomBytes(5 * MiB + Math.floor(rand() * 45 * MiB)) : randomBytes(1 + Math.floor(rand() * 256 * KiB));
  }

  private noteSent(path: string, digest: string): void {
    let s = this.sent.get(path);
    if (!s) this.sent.set(path, (s = new Set()));
    s.add(digest);
  }

  /**
   * Ends the change: true when the server said it was done. One that failed once the kill had come
   * may have been cut anywhere, so what it touched stays open to its outcomes until the check;
   * one refused before is known not to have happened.
   */
  private settle(ok: boolean): boolean {
    if (ok || killedAt === null) {
      this.pending = null;
      this.renaming = null;
    }
    return ok;
  }

  private done(what: string, record: Answered['record']): void {
    this.answered.push({ at: Date.now(), what, record });
  }

  /** One random change, its outcome folded into the model once answered. */
  async step(): Promise<void> {
    const files = this.names().slice(0, 4);
    debug(`${this.dir} step`);
    const path = pick(files);
    const now = this.state(path);
    const roll = rand();
    if (roll < 0.3) await this.wholeUpload(path, rand() < 0.5 ? 'ftp' : 'sftp');
    else if (roll < 0.5 && now.kind !== 'dir') await this.append(path, now, rand() < 0.5 ? 'ftp' : 'sftp');
    else if (roll < 0.65) await this.rename(path, pick(files.filter((f) => f !== path)));
    else if (roll < 0.75 && now.kind === 'file') await this.remove(path);
    else if (roll < 0.9) await this.directory();
    else await this.wholeUpload(path, 'sftp');
  }

  private async wholeUpload(path: string, via: 'ftp' | 'sftp'): Promise<void> {
    debug(`${via} upload ${path}`);
    const data = this.content();
    const digest = sha(data);
    this.noteSent(path, digest);
    const next: State = { kind: 'file', sha: digest, size: data.length };
    this.pending = new Map([[path, [next]]]);
    const ok = via === 'ftp' ? await this.ftpSend('STOR', path, data) : await this.sftpSend(path, data, 'w', 0);
    if (!this.settle(ok)) return;
    this.model.set(path, next);
    this.done(`${via} upload ${path} (${data.length} B)`, (r) => r.event === 'upload' && r.path === path && r.result === 'ok' && r.sha256 === digest);
  }

  private async append(path: string, base: State, via: 'ftp' | 'sftp'): Promise<void> {
    debug(`${via} append ${path}`);
    const add = rand() < 0.15 ? randomBytes(5 * MiB + Math.floor(rand() * 10 * MiB)) : randomBytes(1 + Math.floor(rand() * 128 * KiB));
    const digest = sha(add);
    this.noteSent(path, digest);
    // SFTP writes go 8 at a time: cut, the later ones may have landed past a hole the earlier left.
    this.pending = new Map([[path, [{ kind: 'grow', base, add, holes: via === 'sftp' }]]]);
    const at = base.kind === 'file' ? base.size : 0;
    const ok = via === 'ftp' ? await this.ftpSend('APPE', path, add) : await this.sftpSend(path, add, base.kind === 'file' ? 'r+' : 'w', at);
    if (!this.settle(ok)) return;
    // The whole file's hash is learnt at the next check: a name's state after an append is the check's to read.
    this.model.set(path, { kind: 'file', sha: '', size: at + add.length });
    this.done(`${via} append ${path} (+${add.length} B)`, (r) => r.event === 'upload' && r.path === path && r.result === 'ok' && (r.sha256 === digest || r.sha256 === null));
  }

  private async rename(from: string, to: string): Promise<void> {
    const a = this.state(from);
    const b = this.state(to);
    if (a.kind === 'absent' || (b.kind === 'dir' && a.kind !== 'dir')) return;
    this.pending = new Map([
      [from, [ABSENT]],
      [to, [a]],
    ]);
    this.renaming = { from, to };
    let ok: boolean;
    if (rand() < 0.5 && this.ftp) {
      ok = (await this.ftp.cmd(`RNFR ${from}`)).code === 350 && (await this.ftp.cmd(`RNTO ${to}`)).code === 250;
    } else ok = await this.sftpCall((s, cb) => s.rename(from, to, cb));
    if (!this.settle(ok)) return;
    this.model.set(to, a);
    this.model.set(from, ABSENT);
    this.done(`rename ${from} ${to}`, (r) => r.event === 'rename' && r.from === from && r.to === to);
  }

  private async remove(path: string): Promise<void> {
    this.pending = new Map([[path, [ABSENT]]]);
    const ok = rand() < 0.5 && this.ftp ? (await this.ftp.cmd(`DELE ${path}`)).code === 250 : await this.sftpCall((s, cb) => s.unlink(path, cb));
    if (!this.settle(ok)) return;
    this.model.set(path, ABSENT);
    this.done(`delete ${path}`, (r) => r.event === 'delete' && r.path === path);
  }

  private async directory(): Promise<void> {
    const path = `${this.dir}/d`;
    const made = this.state(path).kind === 'dir';
    this.pending = new Map([[path, [made ? ABSENT : { kind: 'dir' }]]]);
    let ok: boolean;
    if (rand() < 0.5 && this.ftp) ok = (await this.ftp.cmd(`${made ? 'RMD' : 'MKD'} ${path}`)).code === (made ? 250 : 257);
    else ok = await this.sftpCall((s, cb) => (made ? s.rmdir(path, cb) : s.mkdir(path, cb)));
    if (!this.settle(ok)) return;
    this.model.set(path, made ? ABSENT : { kind: 'dir' });
    const event = made ? 'rmdir' : 'mkdir';
    this.done(`${event} ${path}`, (r) => r.event === event && r.path === path);
  }

  /** STOR or APPE over plain FTP; true when the server said 226. */
  private async ftpSend(verb: 'STOR' | 'APPE', path: string, data: Buffer): Promise<boolean> {
    if (!this.ftp) return false;
    let sock;
    try {
      sock = await startUpload(this.ftp, path, false, verb);
    } catch {
      return false;
    }
    sock.on('error', () => undefined);
    sock.end(data);
    const r = await this.ftp.read(120_000).catch(() => null);
    return r?.code === 226;
  }

  /** An SFTP upload at `at`, 1 MiB writes with 8 in flight; true when CLOSE said OK after every write did. */
  private async sftpSend(path: string, data: Buffer, flags: 'w' | 'r+', at: number): Promise<boolean> {
    const s = this.sftp;
    if (!s) return false;
    let handle: Buffer;
    try {
      handle = await this.req<Buffer>((cb) => s.open(path, flags, cb));
    } catch {
      return false;
    }
    let failed = false;
    const chunk = MiB;
    let next = 0;
    const writer = async () => {
      while (next < data.length && !failed) {
        const from = next;
        next += chunk;
        const part = data.subarray(from, Math.min(from + chunk, data.length));
        await this.req((cb) => s.write(handle, part, 0, part.length, at + from, cb)).catch(() => (failed = true));
      }
    };
    await Promise.all(Array.from({ length: 8 }, writer));
    const closed = await this.req((cb) => s.close(handle, cb)).then(() => true, () => false);
    return closed && !failed;
  }

  private async sftpCall(op: (s: ssh2.SFTPWrapper, cb: (err: Error | null | undefined) => void) => void): Promise<boolean> {
    const s = this.sftp;
    if (!s) return false;
    return this.req((cb) => op(s, cb)).then(() => true, () => false);
  }
}

/** What is at `path` on disk (a file's hash read whole). */
function onDisk(home: string, path: string): State & { bytes?: Buffer } {
  const real = join(home, path);
  const st = lstatSync(real, { throwIfNoEntry: false });
  if (!st) return ABSENT;
  if (st.isDirectory()) return { kind: 'dir' };
  const bytes = readFileSync(real);
  return { kind: 'file', sha: sha(bytes), size: bytes.length, bytes };
}

function matches(found: State & { bytes?: Buffer }, want: Outcome): boolean {
  if (want.kind === 'grow') {
    const base = want.base.kind === 'file' ? want.base : null;
    const baseSize = base?.size ?? 0;
    if (found.kind !== 'file' || !found.bytes) return want.base.kind === 'absent' && found.kind === 'absent';
    if (found.size < baseSize || found.size > baseSize + want.add.length) return false;
    if (base && base.sha !== '' && sha(found.bytes.subarray(0, baseSize)) !== base.sha) return false;
    const got = found.bytes.subarray(baseSize);
    const sent = want.add.subarray(0, got.length);
    if (got.equals(sent)) return true;
    return want.holes && got.every((b, i) => b === sent[i] || b === 0);
  }
  if (want.kind !== found.kind) return false;
  if (want.kind === 'file' && found.kind === 'file') return want.size === found.size && (want.sha === '' || want.sha === found.sha);
  return true;
}

const describeState = (s: Outcome): string =>
  s.kind === 'file' ? `file ${s.size} B ${s.sha.slice(0, 8)}` : s.kind === 'grow' ? `grow of (${describeState(s.base)}) by up to ${s.add.length} B` : s.kind;

function auditRecords(srv: TestServer): Record<string, unknown>[] {
  const text = readFileSync(join(srv.dir, 'data', 'audit.log'), 'utf8');
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a torn fragment: verify judges it
    }
  }
  return out;
}

/** Every process under `pid` (its workers). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));

/** The CLI changes a user while the server runs: `user add` with a quota, `set`, `passwd`, `remove`. */
class CliActor {
  proc: ChildProcess | null = null;
  /** User name to what it may be after the kill: absent or with these quotas. */
  readonly expected = new Map<string, { quotaBytes: number | null }[]>();
  private n = 0;
  constructor(private readonly dir: string) {}

  async step(): Promise<void> {
    const name = `cli${this.n % 3}`;
    const now = this.expected.get(name) ?? [{ quotaBytes: null }];
    const exists = now.length === 1 && now[0]!.quotaBytes !== null;
    this.n++;
    const quota = 1000 + Math.floor(rand() * 1_000_000);
    let args: string[];
    let after: { quotaBytes: number | null };
    if (!exists) {
      args = ['user', 'add', name, '--password-stdin', '--quota-bytes', String(quota), '--quota-files', '7', '--perms', 'read,write'];
      after = { quotaBytes: quota };
    } else if (rand() < 0.5) {
      args = ['user', 'set', name, '--quota-bytes', String(quota)];
      after = { quotaBytes: quota };
    } else if (rand() < 0.5) {
      args = ['user', 'passwd', name, '--password-stdin'];
      after = now[0]!;
    } else {
      args = ['user', 'remove', name];
      after = { quotaBytes: null };
    }
    this.expected.set(name, [...now, after]);
    const code = await new Promise<number | null>((resolve) => {
      this.proc = spawn(process.execPath, [BIN, ...args], { cwd: this.dir, stdio: ['pipe', 'ignore', 'ignore'], env: { ...process.env, SLUICE_LOG_LEVEL: 'warn' } });
      this.proc.stdin?.end('a new password for the cli user\n');
      this.proc.once('exit', (c) => resolve(c));
    });
    this.proc = null;
    this.expected.set(name, code === 0 ? [after] : now);
  }

  check(iteration: number): void {
    const list = sluice(this.dir, ['user', 'list', '--json']);
    if (list.code !== 0) return violation(iteration, `user list fails: ${list.stderr}`);
    for (const [name, may] of this.expected) {
      const r = sluice(this.dir, ['user', 'show', name, '--json']);
      const quotaBytes = r.code === 0 ? ((JSON.parse(r.stdout) as { quotaBytes: number | null }).quotaBytes ?? null) : null;
      const fits = may.some((m) => m.quotaBytes === quotaBytes);
      if (!fits) violation(iteration, `user ${name}: quota ${quotaBytes}, expected one of ${may.map((m) => m.quotaBytes).join(', ')}`);
      // Settle: what is there now is what the next change starts from.
      this.expected.set(name, [{ quotaBytes }]);
    }
  }
}

async function main(): Promise<void> {
  console.log(`crash probe: ${ITERATIONS} iterations, workers ${WORKERS}, seed ${opts.seed}`);
  const srv = await TestServer.start({
    yaml: 'ftp:\n  tls: optional\n',
    env: { SLUICE_WORKERS: String(WORKERS) },
    users: [
      { name: 'plain', password: PASSWORD },
      { name: 'quser', password: PASSWORD, args: ['--quota-bytes', String(QUOTA_BYTES), '--quota-files', String(QUOTA_FILES)] },
    ],
  });
  const actors = Array.from({ length: ACTORS }, (_, i) => new Actor(i % 2 === 0 ? 'plain' : 'quser', `/a${i}`, new Map(), new Map()));
  const cli = new CliActor(srv.dir);
  try {
    for (const a of actors) {
      await a.connect(srv);
      await call((cb) => a.sftp!.mkdir(a.dir, cb));
      a.close();
    }
    for (let it = 1; it <= ITERATIONS; it++) await iteration(it, srv, actors, cli);
  } finally {
    for (const a of actors) a.close();
    if (violations.length === 0) await srv.stop();
    else console.log(`data directory kept: ${srv.dir}`);
  }
  console.log(`${ITERATIONS} iterations, ${violations.length} violations`);
  for (const v of violations) console.log(v);
  process.exitCode = violations.length === 0 ? 0 : 1;
}

async function iteration(it: number, srv: TestServer, actors: Actor[], cli: CliActor): Promise<void> {
  for (const a of actors) await a.connect(srv);
  debug('connected');
  let stopping = false;
  const counts = { steps: 0 };
  const loops = [
    ...actors.map(async (a) => {
      while (!stopping) {
        await a.step().catch(() => undefined);
        counts.steps++;
      }
      debug(`${a.dir} ended`);
    }),
    (async () => {
      while (!stopping) await cli.step();
      debug('cli ended');
    })(),
  ];
  const delay = 300 + Math.floor(rand() * 6000);
  await sleep(delay);
  const mode = WORKERS > 1 ? pick(['primary', 'worker', 'both'] as const) : 'primary';
  const pid = srv.pid!;
  const workers = childrenOf(pid);
  killedAt = Date.now();
  const targets = mode === 'primary' ? [pid] : mode === 'worker' ? [pick(workers)] : [pid, ...workers];
  for (const p of targets) process.kill(p, 'SIGKILL');
  if (cli.proc && rand() < 0.5) cli.proc.kill('SIGKILL');
  stopping = true;
  if (mode !== 'worker') for (const a of actors) a.close();
  debug(`killed ${mode} ${targets.join(' ')}`);
  await Promise.all(loops);
  debug('loops ended');
  for (const a of actors) a.close();
  // Every process of the old server gone (a primary's workers exit when their channel closes).
  for (let i = 0; i < 200 && [pid, ...workers].some((p) => (mode === 'worker' ? false : alive(p))); i++) await sleep(50);
  if (mode === 'worker') {
    // The primary starts a new worker after a second; then a clean stop and start recounts the usage.
    await sleep(1500);
  }
  // A second cut, now and then, while the server starts again: in its sweep, its recount, its audit trail's recovery.
  let during = '';
  if (rand() < 0.3) {
    const starting = srv.restart().then(() => 'after it was ready', () => 'while it started');
    await sleep(Math.floor(rand() * 600));
    const again = srv.pid!;
    for (const p of [again, ...childrenOf(again)]) process.kill(p, 'SIGKILL');
    during = `, killed again ${await starting}`;
  }
  try {
    await srv.restart();
  } catch (err) {
    violation(it, `restart failed: ${(err as Error).message.slice(0, 2000)}`);
    throw err;
  }
  console.log(`#${it}: ${mode} killed after ${delay} ms, ${counts.steps} steps${during}`);
  await check(it, srv, actors, killedAt, cli);
  killedAt = null;
}

async function check(it: number, srv: TestServer, actors: Actor[], killedAt: number, cli: CliActor): Promise<void> {
  // Serves: each actor logs in over both protocols (the next iteration does so too) and lists its directory.
  for (const a of actors) {
    try {
      await a.connect(srv);
      const names = (await call<ssh2.FileEntry[]>((cb) => a.sftp!.readdir(a.dir, cb))).map((e) => e.filename);
      const hidden = names.filter((n) => n.startsWith('.sluice-upload-'));
      if (hidden.length > 0) violation(it, `${a.dir} lists temporaries: ${hidden.join(' ')}`);
    } catch (err) {
      violation(it, `${a.user} cannot log in or list after the restart: ${(err as Error).message}`);
    } finally {
      a.close();
    }
  }
  // Files: each name its old content or the whole new one.
  for (const a of actors) {
    const home = srv.home(a.user);
    for (const path of a.names()) {
      const found = onDisk(home, path);
      const allowed: Outcome[] = [a.state(path), ...(a.pending?.get(path) ?? [])];
      if (!allowed.some((w) => matches(found, w))) {
        violation(it, `${a.user}${path}: holds ${describeState(found)}, expected ${allowed.map(describeState).join(' or ')}`);
      }
      a.model.set(path, found.kind === 'file' ? { kind: 'file', sha: found.sha, size: found.size } : found);
    }
    if (a.pending && a.renaming) {
      const [from, to] = [a.renaming.from, a.renaming.to].map((p) => lstatSync(join(home, p), { throwIfNoEntry: false }));
      if (from && to && from.ino === to.ino) violation(it, `${a.user}: rename ${a.renaming.from} ${a.renaming.to} cut half-way: the file has both names`);
    }
    a.pending = null;
    a.renaming = null;
    const extra = readdirSync(join(home, a.dir)).filter((n) => !a.names().includes(`${a.dir}/${n}`));
    if (extra.length > 0) violation(it, `${a.user}${a.dir}: names nobody made: ${extra.join(' ')}`);
  }
  // Quotas: the stored usage is the home's.
  for (const user of ['plain', 'quser']) {
    const disk = diskUsage(srv.home(user));
    if (disk.temps.length > 0) violation(it, `${user}: temporaries left after the start: ${disk.temps.join(' ')}`);
    const stored = persistedUsage(srv, user);
    if (stored.bytes !== disk.bytes || stored.files !== disk.files) {
      violation(it, `${user}: stored usage ${JSON.stringify(stored)}, disk ${JSON.stringify({ bytes: disk.bytes, files: disk.files })}`);
    }
  }
  // The audit trail.
  const verify = sluice(srv.dir, ['audit', 'verify']);
  if (verify.code !== 0) violation(it, `audit verify: ${verify.stdout} ${verify.stderr}`);
  const records = auditRecords(srv);
  for (const a of actors) {
    for (const done of a.answered.splice(0)) {
      if (done.at < killedAt - RECORD_MARGIN_MS && !records.some(done.record)) {
        violation(it, `no record of ${done.what}, answered ${killedAt - done.at} ms before the kill`);
      }
    }
  }
  for (const r of records) {
    if (r.event !== 'upload' || r.result !== 'ok' || typeof r.path !== 'string') continue;
    const owner = actors.find((a) => a.user === r.user && (r.path as string).startsWith(`${a.dir}/`));
    // An SFTP write not at the file's start, or out of order, is recorded without a hash (SECURITY.md).
    if (owner && r.sha256 !== null && !owner.sentTo(r.path as string).has(r.sha256 as string)) {
      violation(it, `record seq ${r.seq as number}: upload ok of ${r.path as string} with a hash the client never sent whole`);
    }
  }
  // The store.
  const db = new Database(join(srv.dir, 'data', 'sluice.db'), { readonly: true, fileMustExist: true });
  try {
    const integrity = db.pragma('integrity_check', { simple: true });
    if (integrity !== 'ok') violation(it, `integrity_check: ${String(integrity)}`);
    const fk = db.pragma('foreign_key_check') as unknown[];
    if (fk.length > 0) violation(it, `foreign_key_check: ${JSON.stringify(fk)}`);
  } finally {
    db.close();
  }
  cli.check(it);
}

await main();
