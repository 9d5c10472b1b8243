/**
 * sluice as the bench runs it: the built server (dist/) through the tests'
 * TestServer, started with node's flags as `npm start` gives them, in its
 * default configuration (workers: auto) except that plain FTP is allowed
 * (`ftp.tls: optional`), which the plain-FTP workloads need and which changes
 * nothing for FTPS.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { postgresMissing, startPostgres } from '../test/helpers/postgres.js';
import { TestServer } from '../test/helpers/server.js';
import { cpuCgroup } from './cgroup.js';
import { onCleanup, starting } from './cleanup.js';
import { usageOf } from './procfs.js';
import type { SluiceOptions, Target } from './workload.js';

const BENCH_USER = { name: 'bench', password: 'bench password' };

/**
 * node's own flags in package.json's start script (`node <flags> dist/bin.cjs
 * serve`): a `workers 1` server then runs as `npm start` runs it, with the
 * V8 settings a primary otherwise hands its workers.
 */
function startScriptNodeFlags(): string[] {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } };
  const m = /^node((?: -[^ ]+)*) dist\/bin\.cjs serve$/.exec(pkg.scripts.start);
  if (!m) throw new Error(`bench: cannot read node's flags from the start script: ${pkg.scripts.start}`);
  return m[1]!.trim().split(' ').filter((f) => f !== '');
}

/**
 * Each sluice's 100 passive ports, below the kernel's ephemeral range as the
 * peer's are (peers.ts: 10000-19999): on loopback the clients' own ports
 * come from that range, and the TIME_WAITs of their data connections took a
 * quarter of a range inside it (TestServer picks one anywhere from 20000 up),
 * each PASV/EPSV that drew one paying for a failed bind. The sluices of one
 * bench get ranges of their own.
 */
let rangesGiven = 0;
function passivePorts(): string {
  const [ephemeralLow] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const slots = Math.max(1, Math.floor(((ephemeralLow ?? 32768) - 20000) / 100));
  const base = 20000 + ((Math.floor(Math.random() * slots) + rangesGiven++) % slots) * 100;
  return `${base}-${base + 99}`;
}

type Config = Record<string, unknown>;

function isObject(x: unknown): x is Config {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function merge(base: Config, over: Config): Config {
  const out: Config = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isObject(b) && isObject(v) ? merge(b, v) : v;
  }
  return out;
}

type RunningSluice = Target & { stop(): Promise<void>; certsDir: string };

/** The URL of a fresh PostgreSQL (the tests' one: loopback, temp dir), stopped at the bench's end after the sluice on it. */
async function postgresStore(): Promise<Record<string, string>> {
  const missing = postgresMissing();
  if (missing !== null) throw new Error(missing);
  const pg = await starting(startPostgres);
  onCleanup(() => pg.stop());
  return { SLUICE_STORE_URL: pg.url };
}

/** A sluice with the bench user (password and key) and any further `options.users`. */
export async function startSluice(options: SluiceOptions, publicKeyFile: string): Promise<RunningSluice> {
  const config = merge({ ftp: { tls: 'optional' } }, options.config ?? {});
  const users = [BENCH_USER, ...(options.users ?? [])];
  const store = options.postgres ? await postgresStore() : {};
  const srv = await starting(() =>
    TestServer.start({
      yaml: stringify(config),
      // The tests' server runs one process; a user's runs one worker per core (workers: auto).
      // SLUICE_BENCH_WORKERS sets another count for every workload that does not set its own.
      env: { SLUICE_WORKERS: process.env.SLUICE_BENCH_WORKERS ?? 'auto', SLUICE_PASV_PORTS: passivePorts(), ...store, ...options.env },
      users: users.map((u) => ({ ...u, args: ['--key', publicKeyFile, ...(options.userArgs ?? [])] })),
      nodeArgs: startScriptNodeFlags(),
    }),
  );
  const pid = srv.pid as number;
  const cpu = cpuCgroup(options.name, pid);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await srv.stop();
  };
  onCleanup(stop);
  const ep = (port: number) => ({ port, user: BENCH_USER.name, password: BENCH_USER.password, remoteDir: '/', localDir: srv.home(BENCH_USER.name) });
  return {
    name: options.name,
    kind: 'sluice',
    pid,
    endpoints: { ftp: ep(srv.ftpPort), ftps: ep(srv.ftpPort), sftp: ep(srv.sftpPort) },
    usage: () => usageOf(pid, true, cpu),
    stop,
    certsDir: join(srv.dir, 'certs'),
  };
}
