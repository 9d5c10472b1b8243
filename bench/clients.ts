/**
 * The real clients the workloads drive, the same for every server: curl (FTP,
 * FTPS), OpenSSH sftp and lftp. Each run is a child process with a time
 * limit; a non-zero exit or the limit fails the run with the client's stderr.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { isInterrupted, onCleanupFirst } from './cleanup.js';
import type { BenchContext, Endpoint } from './workload.js';

export interface ClientRun {
  stdout: string;
  seconds: number;
}

/** Clients running now: stopped first at the bench's end, before the servers they talk to. */
const running = new Set<ChildProcess>();
onCleanupFirst(() => {
  for (const c of running) c.kill('SIGKILL');
});

export function runClient(cmd: string, args: string[], timeoutMs: number, input = ''): Promise<ClientRun> {
  if (isInterrupted()) return Promise.reject(new Error('interrupted'));
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      running.delete(child);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      if (code === 0) resolve({ stdout, seconds });
      else if (isInterrupted()) reject(new Error('interrupted'));
      else if (signal === 'SIGKILL') reject(new Error(`${cmd} took over ${timeoutMs / 1000} s and was stopped`));
      else reject(new Error(`${cmd} exited ${code ?? signal}: ${[...new Set(stderr.trim().split('\n'))].join(' | ').slice(0, 400)}${ftpsReuseHint(stderr)}`));
    });
    child.stdin.end(input);
  });
}

/**
 * Both servers refuse an FTPS data connection that does not resume the
 * control connection's TLS session (vsftpd's require_ssl_reuse: 522; sluice:
 * 425). Some curl builds never offer it there (curl/curl#22225, fixed by
 * curl/curl#22246; seen with 8.21.0-DEV, while 8.14 resumes), and then every
 * FTPS run of every server fails: said once, beside the error, so the
 * failure is not taken for the server's.
 */
function ftpsReuseHint(stderr: string): string {
  if (!/got 522|must resume the TLS session|PASV\/EPSV response: 425/.test(stderr)) return '';
  return ' [the client did not resume the TLS session on the data connection: a curl with curl/curl#22225 (8.21.0-DEV here); take curl 8.14 (bookworm-backports) or one with curl/curl#22246]';
}

/** curl's version as [major, minor], or null when it does not run. */
function curlVersion(curl: string): [number, number] | null {
  const r = spawnSync(curl, ['--version'], { encoding: 'utf8' });
  const m = /^curl (\d+)\.(\d+)/.exec(r.stdout ?? '');
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/**
 * curl before 8.4 waits up to a second between FTP transfers on one
 * connection, against any server (curl/curl#12033): the small-file figures
 * would measure curl, not the server.
 */
export function curlWarning(curl: string): string | null {
  const v = curlVersion(curl);
  if (!v) return `${curl} does not run: the FTP workloads will fail (set SLUICE_BENCH_CURL)`;
  if (v[0] > 8 || (v[0] === 8 && v[1] >= 4)) return null;
  return [
    `WARNING: ${curl} is curl ${v.join('.')}, older than 8.4: it has curl/curl#12033, up to 1 s of stall`,
    '  between FTP transfers on one connection against ANY server (vsftpd too), so the small-file',
    '  figures measure curl. Debian 12 ships 7.88; take curl 8.14 from bookworm-backports',
    '  (apt-get install -t bookworm-backports curl) or point SLUICE_BENCH_CURL at a curl >= 8.4.',
  ].join('\n');
}

/** curl's options for one endpoint: login, and for FTPS explicit TLS (AUTH TLS, PROT P) with the self-signed certificate. */
export function curlBase(ep: Endpoint, tls: boolean): string[] {
  return ['-sS', '-u', `${ep.user}:${ep.password ?? ''}`, ...(tls ? ['--ssl-reqd', '-k'] : [])];
}

export function ftpUrl(ep: Endpoint, path: string): string {
  return `ftp://127.0.0.1:${ep.port}${path}`;
}

/** Both SSH servers are asked for the same cipher, so the comparison is of the servers. */
const CIPHER = 'aes128-gcm@openssh.com';

/** OpenSSH sftp with a batch of commands on stdin, key login; fails on the first failing command. */
export function sftpBatch(ctx: BenchContext, ep: Endpoint, commands: string[], timeoutMs: number): Promise<ClientRun> {
  return runClient('sftp', [
    '-q', '-b', '-', '-i', ctx.sshKey, '-P', String(ep.port), '-c', CIPHER,
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes', '-o', 'LogLevel=ERROR',
    `${ep.user}@127.0.0.1`,
  ], timeoutMs, commands.join('\n') + '\n');
}

/** lftp running `commands` after logging in; plain FTP or explicit FTPS with data protection. */
export function lftp(ep: Endpoint, tls: boolean, commands: string[], timeoutMs: number): Promise<ClientRun> {
  const settings = tls
    ? ['set ftp:ssl-force yes', 'set ftp:ssl-protect-data yes', 'set ssl:verify-certificate no']
    : ['set ftp:ssl-allow no'];
  const script = [
    'set cmd:fail-exit yes',
    'set net:max-retries 1',
    'set net:timeout 30',
    ...settings,
    `open -u "${ep.user},${ep.password ?? ''}" -p ${ep.port} 127.0.0.1`,
    ...commands,
  ].join('; ');
  return runClient('lftp', ['-c', script], timeoutMs);
}
