/**
 * The servers sluice is compared with, started by the bench on free loopback
 * ports: OpenSSH's sshd with internal-sftp, and vsftpd with plain FTP and
 * explicit FTPS. Both need root (sshd to log in a user, vsftpd to chroot);
 * when they cannot run, the reason comes back instead of a target.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../test/helpers/server.js';
import { onCleanup, starting } from './cleanup.js';
import { cpuCgroup } from './cgroup.js';
import { usageOf } from './procfs.js';
import type { Target } from './workload.js';

const SSHD = '/usr/sbin/sshd';
const VSFTPD = '/usr/sbin/vsftpd';

async function waitForPort(port: number, child: ChildProcess, what: string): Promise<void> {
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

/**
 * Starts `binary` in a CPU cgroup of its own (before it can fork), and
 * registers its stop (SIGTERM, then wait) for the bench's end.
 */
function daemon(name: string, binary: string, args: string[]): { child: ChildProcess; cpu: (() => number) | null } {
  const child = spawn(binary, args, { stdio: 'ignore' });
  const cpu = child.pid === undefined ? null : cpuCgroup(name, child.pid);
  onCleanup(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  });
  return { child, cpu };
}

/** Why a peer cannot run here, or null. */
function missing(binary: string, name: string, pkg: string): string | null {
  if (!existsSync(binary)) return `${name} not installed (apt-get install -y ${pkg})`;
  if (userInfo().uid !== 0) return `${name} needs root to start here (run the bench as root)`;
  return null;
}

function target(name: string, kind: Target['kind'], d: ReturnType<typeof daemon>, endpoints: Target['endpoints']): Target {
  const pid = d.child.pid as number;
  return { name, kind, pid, endpoints, usage: () => usageOf(pid, false, d.cpu) };
}

/**
 * sshd -D (it stays the parent of every connection, so the CPU of its reaped
 * children lands in its cutime) with internal-sftp, key login as the current
 * (root) user into a scratch directory; the same cipher as sluice is asked for.
 */
export function startOpenSsh(work: string, publicKey: string): Promise<Target | string> {
  return starting(() => openSsh(work, publicKey));
}

async function openSsh(work: string, publicKey: string): Promise<Target | string> {
  const why = missing(SSHD, 'OpenSSH', 'openssh-server');
  if (why) return why;
  const dir = join(work, 'openssh');
  const home = join(dir, 'home');
  mkdirSync(home, { recursive: true });
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
    'Subsystem sftp internal-sftp',
    `PidFile ${join(dir, 'sshd.pid')}`,
  ].join('\n') + '\n');
  const d = daemon('openssh', SSHD, ['-D', '-e', '-f', config]);
  await waitForPort(port, d.child, 'sshd');
  return target('OpenSSH', 'openssh', d, {
    sftp: { port, user: userInfo().username, password: null, remoteDir: home, localDir: home },
  });
}

/**
 * vsftpd, plain FTP and explicit FTPS on one port like sluice. It logs in
 * system users through PAM: a PAM service of its own (removed at the end)
 * lets the current (root) user in with any password, chrooted to a scratch
 * directory, so no account or password of the machine is touched. It gets
 * sluice's certificate: the same key on both sides of the comparison.
 */
export function startVsftpd(work: string, certFile: string, keyFile: string): Promise<Target | string> {
  return starting(() => vsftpd(work, certFile, keyFile));
}

async function vsftpd(work: string, certFile: string, keyFile: string): Promise<Target | string> {
  const why = missing(VSFTPD, 'vsftpd', 'vsftpd');
  if (why) return why;
  const dir = join(work, 'vsftpd');
  const root = join(dir, 'root');
  mkdirSync(root, { recursive: true });
  mkdirSync('/var/run/vsftpd/empty', { recursive: true });
  const pamService = `sluice-bench-${process.pid}`;
  const pamFile = `/etc/pam.d/${pamService}`;
  writeFileSync(pamFile, 'auth required pam_permit.so\naccount required pam_permit.so\nsession required pam_permit.so\n');
  onCleanup(() => rmSync(pamFile, { force: true }));
  const port = await freePort();
  // The same number of passive ports as the sluice the bench starts.
  const pasv = 10000 + Math.floor(Math.random() * 100) * 100; // below the ranges the bench gives sluice (sluice.ts: 20000 up)
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
    'force_local_logins_ssl=NO',
    'force_local_data_ssl=NO',
    `rsa_cert_file=${certFile}`,
    `rsa_private_key_file=${keyFile}`,
    // sluice requires it too, and curl resumes the session on every data connection.
    'require_ssl_reuse=YES',
    'ssl_ciphers=HIGH',
    `pasv_min_port=${pasv}`,
    `pasv_max_port=${pasv + 99}`,
    'xferlog_enable=NO',
  ].join('\n') + '\n');
  const d = daemon('vsftpd', VSFTPD, [config]);
  await waitForPort(port, d.child, 'vsftpd');
  const ep = { port, user: userInfo().username, password: 'any', remoteDir: '/', localDir: root };
  return target('vsftpd', 'vsftpd', d, { ftp: ep, ftps: ep });
}
