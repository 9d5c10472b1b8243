import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './server.js';

/**
 * A real PostgreSQL server for the tests: initdb in a fresh temp directory,
 * listening on 127.0.0.1 only (its unix socket inside that directory), one
 * database owned by an ordinary role for sluice. Durability is switched off:
 * the data is thrown away at stop().
 */
export interface TestPostgres {
  /** postgres://sluice:PW@127.0.0.1:PORT/sluice: the role owns the database and is no superuser. */
  readonly url: string;
  /** A further empty database owned by the same role: its URL. */
  createDatabase(): Promise<string>;
  /** Stop the server as an outage would (its clients cut off), keeping its data and port for up(). */
  down(): Promise<void>;
  /** Start it again after down(), on the same port with the same data. */
  up(): Promise<void>;
  /** Stop the server and remove its directory. */
  stop(): Promise<void>;
}

const ROLE = 'sluice';
const ADMIN = 'sluice_admin';

/** Debian keeps the server programs off PATH: ask pg_config, else look in /usr/lib/postgresql/N/bin. */
export function postgresBinDir(): string | null {
  const candidates: string[] = [];
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // no pg_config (libpq-dev absent): the versioned directories below still count
  }
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => /^\d+$/.test(v));
    for (const v of versions.sort((a, b) => Number(b) - Number(a))) candidates.push(join(root, v, 'bin'));
  }
  return candidates.find((dir) => ['initdb', 'pg_ctl', 'postgres'].every((p) => existsSync(join(dir, p)))) ?? null;
}

interface Account {
  uid: number;
  gid: number;
}

/** PostgreSQL refuses to run as root: then the server runs as the tests' unprivileged user. */
function serverAccount(): Account | null | string {
  if (process.getuid?.() !== 0) return null;
  const name = process.env.SLUICE_TEST_USER ?? 'sluice-test';
  try {
    const [, , uid, gid] = execFileSync('getent', ['passwd', name], { encoding: 'utf8' }).trim().split(':');
    return { uid: Number(uid), gid: Number(gid) };
  } catch {
    return `running as root and there is no user ${name} to run PostgreSQL as (.ci/run creates it)`;
  }
}

/**
 * Why the PostgreSQL tests cannot run here, or null. In CI they must run
 * (.ci/run installs Debian's postgresql), so a missing server is an error
 * there, not a skip.
 */
export function postgresMissing(): string | null {
  const bin = postgresBinDir();
  const account = serverAccount();
  const reason = bin === null
    ? 'PostgreSQL not installed (no initdb via pg_config --bindir or /usr/lib/postgresql/*/bin): PostgreSQL tests skipped'
    : typeof account === 'string' ? `${account}: PostgreSQL tests skipped` : null;
  if (reason !== null && process.env.CI) throw new Error(`CI: ${reason}`);
  return reason;
}

function run(bin: string, args: string[], account: Account | null): Promise<void> {
  return new Promise((resolve, reject) => {
    // The server pg_ctl starts keeps no pipe of ours (its output goes to -l), so 'exit' is the end.
    const child = spawn(bin, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
      ...(account ?? {}),
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`${bin} ${args.join(' ')} exited ${code}:\n${output}`)),
    );
  });
}

export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  const account = serverAccount();
  if (bin === null || typeof account === 'string') throw new Error(postgresMissing() ?? 'PostgreSQL unavailable');
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  const adminPassword = randomBytes(16).toString('hex');
  const rolePassword = randomBytes(16).toString('hex');
  const pwfile = join(dir, 'pwfile');
  writeFileSync(pwfile, `${adminPassword}\n`, { mode: 0o600 });
  if (account) for (const p of [dir, pwfile]) chownSync(p, account.uid, account.gid);
  const pgctl = join(bin, 'pg_ctl');
  let port = 0;
  let startArgs: string[] = [];
  try {
    // C locale: lower() folds ASCII only, as SQLite's NOCASE does, whatever the machine's locale.
    await run(join(bin, 'initdb'), ['-D', data, '-U', ADMIN, `--pwfile=${pwfile}`, '-A', 'scram-sha-256', '-E', 'UTF8',
      '--locale=C', '--no-sync'], account);
    // The port is free when chosen and may be taken before the server binds it: try a few.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const options = [`-p ${port}`, '-c listen_addresses=127.0.0.1', `-c unix_socket_directories=${dir}`,
        '-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off'];
      startArgs = ['start', '-D', data, '-w', '-t', '60', '-l', log, '-o', options.join(' ')];
      try {
        await run(pgctl, startArgs, account);
        break;
      } catch (err) {
        if (attempt === 3) throw new Error(`${String(err)}\n${existsSync(log) ? readFileSync(log, 'utf8') : ''}`);
      }
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const admin = (database: string) => `postgres://${ADMIN}:${adminPassword}@127.0.0.1:${port}/${database}`;
  const stopArgs = ['stop', '-D', data, '-m', 'immediate', '-w'];
  // A test file that dies before its after() hook must not leave a server running: 'exit' allows only synchronous work.
  const onExit = () => {
    try {
      execFileSync(pgctl, stopArgs, { stdio: 'ignore', ...(account ?? {}) });
    } catch {
      // stopped already
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const stop = async () => {
    process.off('exit', onExit);
    try {
      await run(pgctl, stopArgs, account);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  let made = 0;
  const createDatabase = async (name = `sluice_${++made}`): Promise<string> => {
    const client = new pg.Client({ connectionString: admin('postgres') });
    await client.connect();
    try {
      // Names and password are ours, hex or fixed, never input: CREATE takes no bound parameters.
      if (name === ROLE) await client.query(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${rolePassword}'`);
      await client.query(`CREATE DATABASE ${name} OWNER ${ROLE}`);
    } finally {
      await client.end();
    }
    return `postgres://${ROLE}:${rolePassword}@127.0.0.1:${port}/${name}`;
  };
  try {
    const url = await createDatabase(ROLE);
    return {
      url,
      createDatabase: () => createDatabase(),
      down: () => run(pgctl, ['stop', '-D', data, '-m', 'fast', '-w'], account),
      up: () => run(pgctl, startArgs, account),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** An onError for a store's background work that fails the test: nothing should go wrong there. */
export function unexpected(err: unknown): never {
  assert.fail(err instanceof Error ? err : String(err));
}
