import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO } from './repo.js';

export const BIN = join(REPO, 'dist/bin.cjs');

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the built `sluice` in `cwd`, like a user would. */
export function sluice(cwd: string, args: string[], input?: string, env: NodeJS.ProcessEnv = {}): Run {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    input: input ?? '',
    encoding: 'utf8',
    env: { ...process.env, SLUICE_LOG_LEVEL: 'warn', ...env },
    timeout: 60_000,
    // An audit query of a long trail prints tens of MiB; the default 1 MiB would kill it.
    maxBuffer: 256 * 1024 * 1024,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** As sluice(), without holding this process: for several runs at once. */
export function sluiceAsync(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, SLUICE_LOG_LEVEL: 'warn', ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  child.stdin.end();
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** How long a test's server may take to stop after SIGTERM: its drain (2 s in tests, 30 s by default) and its exit. */
const STOP_PATIENCE_MS = 60_000;

/**
 * Start `sluice serve` (node run with `nodeArgs` first) and resolve once `marker` appears on stdout.
 * `runner`: a command that execs the rest in its own process (`setsid`, `prlimit --nofile=64 --`),
 * so that the child's pid stays the server's.
 */
export function startServe(cwd: string, env: NodeJS.ProcessEnv, marker: RegExp, nodeArgs: readonly string[] = [], runner: readonly string[] = []) {
  const [command = process.execPath, ...args] = [...runner, process.execPath, ...nodeArgs, BIN, 'serve'];
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${stdout}\n${stderr}`)), 60_000);
    const check = () => {
      if (marker.test(stdout)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited ${code}:\n${stdout}\n${stderr}`));
    });
  });
  /**
   * SIGTERM, and its exit code. A server still running STOP_PATIENCE_MS later is killed and the stop fails:
   * waiting on for ever (a primary whose worker never became ready ignored SIGTERM) held the test file
   * open until CI's time ran out, with nothing said.
   */
  const stop = async (): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return noLeaks(child.exitCode);
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), STOP_PATIENCE_MS)));
    const ended = await Promise.race([exited, late]);
    clearTimeout(timer);
    if (ended !== 'late') return noLeaks(ended);
    child.kill('SIGKILL');
    await exited;
    throw new Error(`serve did not stop within ${STOP_PATIENCE_MS / 1000} s of SIGTERM (killed):\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`);
  };
  /**
   * Node closes a FileHandle nobody closed when it is garbage collected, and only warns: a descriptor the
   * server leaked, which a test sees only if the collection happens to come late (one did, in CI).
   */
  const noLeaks = (code: number | null): number | null => {
    const leak = /^.*on garbage collection.*$/m.exec(stderr);
    if (leak) throw new Error(`the server left a descriptor for garbage collection to close: ${leak[0]}\n${stderr.slice(-2000)}`);
    return code;
  };
  return { child, ready, stop, output: () => ({ stdout, stderr }) };
}
