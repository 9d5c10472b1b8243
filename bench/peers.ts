import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../test/helpers/server.js';

/** Where a server listens, the name a client uploads to, and where that file lands on disk. */
export interface Endpoint {
  port: number;
  user: string;
  password?: string;
  remotePath: string;
  storedAt: string;
}

/** A server under comparison. */
export interface Target {
  name: string;
  sftp?: Endpoint;
  ftps?: Endpoint;
  /** Peak resident memory of the server process so far, in MiB. */
  peakMiB(): number | null;
  /** CPU seconds used so far by the server's event loop and by the whole process; sluice only. */
  cpu?(): { loop: number; process: number };
  stop(): Promise<void>;
}

const SSHD = '/usr/sbin/sshd';
const SFTP_SERVER = '/usr/lib/openssh/sftp-server';
const VSFTPD = '/usr/sbin/vsftpd';

/** VmHWM of a process (Linux). */
export function peakMiB(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  const r = spawnSync('grep', ['VmHWM', `/proc/${pid}/status`], { encoding: 'utf8' });
  const kb = /VmHWM:\s+(\d+)/.exec(r.stdout)?.[1];
  return kb === undefined ? null : Number(kb) / 1024;
}

/** CPU seconds (user + system) of /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat. */
export function cpuSeconds(statPath: string): number {
  const fields = readFileSync(statPath, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function waitForPort(port: number, child: ChildProcess, what: string): Promise<void> {
  const net = await import('node:net');
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not listen on ${port}`);
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
}

/** Why a peer cannot run here, or null. */
function missing(binary: string, name: string): string | null {
  if (!existsSync(binary)) return `${name} not installed (apt-get install -y ${name === 'OpenSSH' ? 'openssh-server' : 'vsftpd'})`;
  if (userInfo().uid !== 0) return `${name} needs root to start here`;
  return null;
}

/**
 * OpenSSH's sshd with its sftp-server, the SFTP reference: key login as the
 * current (root) user, files in `dir`. Same cipher as the client asks of sluice.
 */
export async function startOpenSsh(work: string, publicKey: string): Promise<Target | string> {
  const why = missing(SSHD, 'OpenSSH');
  if (why) return why;
  const dir = join(work, 'openssh');
  mkdirSync(dir, { recursive: true });
  mkdirSync('/run/sshd', { recursive: true });
  const hostKey = join(dir, 'host_ed25519');
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  writeFileSync(join(dir, 'authorized_keys'), publicKey, { mode: 0o600 });
  const port = await freePort();
  const config = join(dir, 'sshd_config');
  writeFileSync(config, [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'StrictModes no',
    'UsePAM no',
    `Subsystem sftp ${SFTP_SERVER}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
  ].join('\n') + '\n');
  const child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: 'ignore' });
  await waitForPort(port, child, 'sshd');
  return {
    name: 'OpenSSH sftp-server',
    sftp: { port, user: userInfo().username, remotePath: join(dir, 'bench.bin'), storedAt: join(dir, 'bench.bin') },
    // sshd forks per connection; the listener's memory says little.
    peakMiB: () => null,
    stop: stopper(child),
  };
}

/**
 * vsftpd with explicit FTPS, the trusted FTP server. It logs in system users
 * through PAM: a PAM service of its own (removed at stop) lets the current
 * (root) user in with any password, chrooted to a scratch directory, so no
 * account or password of the machine is touched.
 */
export async function startVsftpd(work: string, certFile: string, keyFile: string): Promise<Target | string> {
  const why = missing(VSFTPD, 'vsftpd');
  if (why) return why;
  const dir = join(work, 'vsftpd');
  const root = join(dir, 'root');
  mkdirSync(root, { recursive: true });
  mkdirSync('/var/run/vsftpd/empty', { recursive: true });
  const pamService = `sluice-bench-${process.pid}`;
  const pamFile = `/etc/pam.d/${pamService}`;
  writeFileSync(pamFile, 'auth required pam_permit.so\naccount required pam_permit.so\nsession required pam_permit.so\n');
  const port = await freePort();
  const pasv = 40000 + Math.floor(Math.random() * 200) * 100;
  const config = join(dir, 'vsftpd.conf');
  writeFileSync(config, [
    'listen=YES',
    'listen_address=127.0.0.1',
    `listen_port=${port}`,
    'background=NO',
    'anonymous_enable=NO',
    'local_enable=YES',
    'write_enable=YES',
    'userlist_enable=NO',
    `pam_service_name=${pamService}`,
    `local_root=${root}`,
    'chroot_local_user=YES',
    'allow_writeable_chroot=YES',
    'seccomp_sandbox=NO',
    'ssl_enable=YES',
    'force_local_logins_ssl=YES',
    'force_local_data_ssl=YES',
    `rsa_cert_file=${certFile}`,
    `rsa_private_key_file=${keyFile}`,
    // sluice requires it too, and curl resumes the session on every data connection.
    'require_ssl_reuse=YES',
    'ssl_ciphers=HIGH',
    `pasv_min_port=${pasv}`,
    `pasv_max_port=${pasv + 99}`,
    'xferlog_enable=NO',
  ].join('\n') + '\n');
  const child = spawn(VSFTPD, [config], { stdio: 'ignore' });
  try {
    await waitForPort(port, child, 'vsftpd');
  } catch (err) {
    rmSync(pamFile, { force: true });
    throw err;
  }
  const stop = stopper(child);
  return {
    name: 'vsftpd',
    ftps: { port, user: userInfo().username, password: 'any', remotePath: '/bench.bin', storedAt: join(root, 'bench.bin') },
    // vsftpd forks per session too.
    peakMiB: () => null,
    async stop() {
      await stop();
      rmSync(pamFile, { force: true });
    },
  };
}
