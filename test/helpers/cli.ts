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

/** Start `sluice serve` (node run with `nodeArgs` first) and resolve once `marker` appears on stdout. */
export function startServe(cwd: string, env: NodeJS.ProcessEnv, marker: RegExp, nodeArgs: readonly string[] = []) {
  const child = spawn(process.execPath, [...nodeArgs, BIN, 'serve'], { cwd, env: { ...process.env, ...env } });
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
  const stop = async (): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    child.kill('SIGTERM');
    return exited;
  };
  return { child, ready, stop, output: () => ({ stdout, stderr }) };
}
