import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sluice, startServe } from './cli.js';

/** Adds a test server's users in one process (see the file). */
const ADD_USERS = fileURLToPath(new URL('../fixtures/add-users.mjs', import.meta.url));

/** A free TCP port on loopback, reserved for this test process (see freePorts). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port as number;
}

/**
 * `n` distinct free ports: all held at once, then released. (One at a time,
 * the kernel may hand out the same port twice, and the server then fails to
 * bind its second listener.)
 */
export async function freePorts(n: number): Promise<number[]> {
  const ports: number[] = [];
  while (ports.length < n) {
    const port = LISTEN_PORTS.from + Math.floor(Math.random() * (LISTEN_PORTS.to - LISTEN_PORTS.from + 1));
    if (!ports.includes(port) && reserve(port) && (await listenable(port))) ports.push(port);
  }
  return ports;
}

/**
 * The suite's files run in parallel, each drawing ports at random from the
 * same range: two could draw one port in the second before either server
 * bound it, and the later start failed (a clean run once lost the admin
 * API's port so; TestServer.start's retry draws new front-end ports, not a
 * port the test put in its own config). A port drawn is reserved for a
 * minute by a file only one process can create; this process's are removed
 * as it exits.
 */
const RESERVED = join(tmpdir(), `sluice-test-ports-${process.getuid?.() ?? 'any'}`);
const RESERVED_MS = 60_000;
const reserved: string[] = [];

/** This process's reservations, and their directory once no process holds one (another's reserve() makes it again). */
function releaseAll(): void {
  for (const file of reserved) rmSync(file, { force: true });
  try {
    rmdirSync(RESERVED);
  } catch {
    // another process's reservations are still there
  }
}

function reserve(port: number): boolean {
  const file = join(RESERVED, String(port));
  mkdirSync(RESERVED, { recursive: true });
  try {
    writeFileSync(file, String(process.pid), { flag: 'wx' });
  } catch {
    // Another process's, unless it is stale (that process gone without removing it).
    try {
      if (Date.now() - statSync(file).mtimeMs < RESERVED_MS) return false;
      writeFileSync(file, String(process.pid));
    } catch {
      return false;
    }
  }
  if (reserved.length === 0) process.once('exit', releaseAll);
  reserved.push(file);
  return true;
}

/**
 * Where test servers listen: above the kernel's ephemeral range (or below the
 * passive ranges, 20000-59999, when it reaches the top). A port the kernel
 * picked as free (listen on 0) is an ephemeral one, which any client's
 * connect may take before the server binds it: a suite run once failed a
 * server's start with EADDRINUSE that way.
 */
const LISTEN_PORTS = ((): { from: number; to: number } => {
  const [, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  return high !== undefined && high <= 64_000 ? { from: high + 1, to: 65_535 } : { from: 10_000, to: 19_999 };
})();

function listenable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * The run's one set of host keys and TLS certificate (test/helpers/as-test-user.ts makes it), copied
 * into `dir`/certs, where a server run there looks by default: each new set costs about 0.4 s of CPU
 * (an RSA-3072 key among them). Nothing when the run has none (a file run without the launcher).
 */
export function withRunCertificates(dir: string): void {
  const shared = process.env.SLUICE_TEST_CERTS;
  if (shared) cpSync(shared, join(dir, 'certs'), { recursive: true });
}

export interface ServerOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to the server's ./sluice.yaml. */
  yaml?: string;
  users?: { name: string; password: string; args?: string[] }[];
  /** Flags for node itself, before the script (as `npm start` gives them). */
  nodeArgs?: string[];
  /** A command the server is started under, which execs it (startServe's runner). */
  runner?: string[];
}

/**
 * How a start that lost its port says so: the server's own words (src/listening.ts), or the
 * errno where a message carries it. Matching the errno alone stopped every retry once the
 * server's message became a sentence, and a clean run failed a start so.
 */
const PORT_TAKEN = /EADDRINUSE|the port is in use/;

/** The real `sluice serve` process in a temp directory, on free loopback ports. */
export class TestServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'sluice-srv-'));
  ftpPort = 0;
  ftpsPort = 0;
  sftpPort = 0;
  private proc: ReturnType<typeof startServe> | null = null;
  private env: NodeJS.ProcessEnv = {};
  private nodeArgs: readonly string[] = [];
  private runner: readonly string[] = [];

  /**
   * A port free when picked may be bound by another test file's server before
   * this one binds it (the suite runs files in parallel; a clean run once
   * failed a start with EADDRINUSE so): such a start is tried again on new
   * ports, twice at most.
   */
  static async start(options: ServerOptions = {}): Promise<TestServer> {
    for (let tries = 1; ; tries++) {
      const s = new TestServer();
      try {
        await s.startOn(await freePorts(3), options);
        return s;
      } catch (err) {
        await s.stop();
        if (tries === 3 || !PORT_TAKEN.test(String((err as Error).message))) throw err;
      }
    }
  }

  private async startOn(ports: number[], options: ServerOptions): Promise<void> {
    [this.ftpPort, this.ftpsPort, this.sftpPort] = ports as [number, number, number];
    const base = 20000 + Math.floor(Math.random() * 400) * 100;
    const env = {
      SLUICE_BIND: '127.0.0.1',
      SLUICE_FTP_PORT: String(this.ftpPort),
      SLUICE_FTPS_PORT: String(this.ftpsPort),
      SLUICE_SFTP_PORT: String(this.sftpPort),
      SLUICE_PASV_PORTS: `${base}-${base + 99}`,
      SLUICE_LOG_LEVEL: 'info',
      // One process unless a test asks for workers: fewer processes keep the parallel suite fast;
      // SLUICE_TEST_WORKERS runs every suite on workers (test/cluster.test.ts does so always).
      SLUICE_WORKERS: process.env.SLUICE_TEST_WORKERS ?? '1',
      // A test that stops its server with a transfer still open waits this long, not an operator's 30 s.
      SLUICE_SHUTDOWN_DRAIN_TIMEOUT: '2',
      ...options.env,
    };
    if (options.yaml) writeFileSync(join(this.dir, 'sluice.yaml'), options.yaml);
    // The run's one set (test/helpers/as-test-user.ts), unless the test keeps its certificates elsewhere.
    if (!options.env?.SLUICE_CERTS_DIR && !/^certsDir:/m.test(options.yaml ?? '')) withRunCertificates(this.dir);
    const users = (options.users ?? []).map((u) => ({ name: u.name, password: u.password, args: u.args ?? [] }));
    if (users.length > 0) {
      const r = spawnSync(process.execPath, [ADD_USERS, JSON.stringify(users)], { cwd: this.dir, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
      if (r.status !== 0) throw new Error(`user add ${users.map((u) => u.name).join(', ')}: ${r.stderr}`);
    }
    this.env = env;
    this.nodeArgs = options.nodeArgs ?? [];
    this.runner = options.runner ?? [];
    this.proc = startServe(this.dir, env, /sluice started/, this.nodeArgs, this.runner);
    await this.proc.ready;
  }

  /** Stop the process (if still running) and start it again on the same directory and ports. */
  async restart(whileStopped?: () => void): Promise<void> {
    await this.proc?.stop();
    whileStopped?.();
    this.proc = startServe(this.dir, this.env, /sluice started/, this.nodeArgs, this.runner);
    await this.proc.ready;
  }

  /** Addresses banned now, as `sluice ban list` shows them. */
  bans(): string[] {
    const r = sluice(this.dir, ['ban', 'list', '--json']);
    return (JSON.parse(r.stdout) as { address: string }[]).map((b) => b.address);
  }

  home(user: string): string {
    return join(this.dir, 'data', 'homes', user);
  }

  /** The file `user` uploaded to `path` (a path in the home), and the upload's audit record once it is written. */
  async uploaded(user: string, path: string): Promise<{ stored: Buffer; record: Record<string, unknown> | undefined }> {
    const stored = readFileSync(join(this.home(user), path));
    const records = await this.auditUntil((r) => r.event === 'upload' && r.path === path);
    return { stored, record: records.find((r) => r.event === 'upload' && r.path === path) };
  }

  /**
   * Audit records so far (the server flushes at least every second), after a
   * fixed wait: prefer auditUntil/auditUntilAll/auditWhen, which wait for what
   * the caller then checks. A last line not ended yet (the server is writing
   * it) is left for the next read.
   */
  async audit(wait = 1200): Promise<Record<string, unknown>[]> {
    await new Promise((r) => setTimeout(r, wait));
    const text = readFileSync(join(this.dir, 'data', 'audit.log'), 'utf8');
    return text.split('\n').slice(0, -1).filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /**
   * Audit records once one satisfies `found`, polling up to `timeoutMs`: a
   * record written in the server's next flush may come later than audit()'s
   * fixed wait on a loaded machine.
   */
  async auditUntil(found: (record: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>[]> {
    return this.auditWhen((records) => records.some(found), timeoutMs);
  }

  /**
   * Audit records once each of `found` is satisfied by some record (not
   * necessarily the same one), polling like auditUntil: for a caller that
   * needs several records whose order in the trail is not fixed (written by
   * different sessions, or workers).
   */
  async auditUntilAll(found: ((record: Record<string, unknown>) => boolean)[], timeoutMs = 10_000): Promise<Record<string, unknown>[]> {
    return this.auditWhen((records) => found.every((f) => records.some(f)), timeoutMs);
  }

  /**
   * Audit records once `done` holds of them all (e.g. a count of records
   * reached), polling every 200 ms up to `timeoutMs`. On timeout it returns
   * the records as they are, so the caller's own assertion fails with its own
   * message. Polling cannot prove a record absent: to assert one is not
   * there, wait first for a record written after it would have been.
   */
  async auditWhen(done: (records: Record<string, unknown>[]) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>[]> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const records = await this.audit(200);
      if (done(records) || Date.now() > end) return records;
    }
  }

  get log(): string {
    return this.proc?.output().stdout ?? '';
  }

  /**
   * Asserts the log comes to match `pattern` within `timeoutMs`: the server
   * writes its lines asynchronously, so a line may come after the reply to
   * what caused it (a full run once read the log before it).
   */
  async logs(pattern: RegExp, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!pattern.test(this.log) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    assert.match(this.log, pattern);
  }

  /**
   * Waits for the line a connection's RefusalLog writes at its close, saying
   * it refused `count` requests, written after the log's length was `since`;
   * returns how many lines with `msg` that same connection wrote. Counted by
   * its id: a line of an earlier connection may reach the log after this one
   * began (a full run once counted 6 where 5 were written).
   */
  async refusalLines(since: number, count: number, msg: string): Promise<number> {
    const closing = new RegExp(`"refused":${count}.*requests refused on this connection`);
    const end = Date.now() + 10_000;
    while (!closing.test(this.log.slice(since)) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const entries = (text: string) =>
      text.split('\n').flatMap((l) => {
        try {
          return [JSON.parse(l) as { conn?: unknown; refused?: unknown; msg?: unknown }];
        } catch {
          return [];
        }
      });
    const closed = entries(this.log.slice(since)).filter((l) => l.refused === count && l.msg === 'requests refused on this connection');
    assert.equal(closed.length, 1, `one connection said it refused ${count} requests`);
    const conn = closed[0]?.conn;
    return entries(this.log).filter((l) => l.conn === conn && l.msg === msg).length;
  }

  get stderr(): string {
    return this.proc?.output().stderr ?? '';
  }

  signal(sig: NodeJS.Signals): void {
    this.proc?.child.kill(sig);
  }

  /** Stop the process as SIGTERM does, letting it flush its logs, and keep its directory to read. */
  async terminate(): Promise<void> {
    await this.proc?.stop();
  }

  /** Kill the process without letting it clean up, as a crash would, and wait for it to die. */
  async kill(): Promise<void> {
    const child = this.proc?.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const died = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await died;
  }

  /** The server process, e.g. for its memory use or to see it exit. */
  get process(): ReturnType<typeof startServe>['child'] | undefined {
    return this.proc?.child;
  }

  get pid(): number | undefined {
    return this.proc?.child.pid;
  }

  get alive(): boolean {
    return this.proc?.child.exitCode === null;
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
