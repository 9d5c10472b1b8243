/**
 * A rename cut by a crash at one precise point (SECURITY.md, Quotas, "A rename replaces only what
 * it looked at": the known gap). The server runs under strace, which kills it with SIGKILL as it
 * enters its first unlink: the old name's, after the link(2) that gave the file its new name. One
 * SFTP RENAME onto a free name; the server is then started again on the same directory. rename(2)
 * would leave the file under one name; sluice's link-then-unlink leaves it under both, and the
 * start does not repair it.
 *
 *   node build/test/helpers/as-test-user.js --import tsx bench/probe/rename-cut.ts
 *
 * Prints what the home holds after the restart; exits 1 while the file keeps both names. Needs strace.
 */
import { lstatSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServe } from '../../test/helpers/cli.js';
import { TestServer } from '../../test/helpers/server.js';
import { call, sftpOf, sshConnect } from '../../test/helpers/ssh.js';

const PASSWORD = 'rename cut password';
const srv = await TestServer.start({
  users: [{ name: 'alice', password: PASSWORD }],
  runner: ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=unlink,unlinkat', '-e', 'inject=unlink,unlinkat:signal=KILL:when=1'],
});
let again: ReturnType<typeof startServe> | null = null;
try {
  const home = srv.home('alice');
  writeFileSync(join(home, 'a.txt'), 'the file');
  const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: PASSWORD });
  conn.on('error', () => undefined);
  const sftp = await sftpOf(conn);
  const closed = new Promise<string>((resolve) => conn.once('close', () => resolve('connection closed')));
  const answer = await Promise.race([call((cb) => sftp.rename('/a.txt', '/b.txt', cb)).then(() => 'ok', (e: Error) => e.message), closed]);
  console.log(`RENAME /a.txt /b.txt: ${answer}`);
  await srv.kill();
  again = startServe(srv.dir, { SLUICE_BIND: '127.0.0.1', SLUICE_FTP_PORT: String(srv.ftpPort), SLUICE_FTPS_PORT: String(srv.ftpsPort), SLUICE_SFTP_PORT: String(srv.sftpPort), SLUICE_WORKERS: '1' }, /sluice started/);
  await again.ready;
  const [a, b] = ['a.txt', 'b.txt'].map((n) => lstatSync(join(home, n), { throwIfNoEntry: false }));
  console.log(`after the restart: a.txt ${a ? `ino ${a.ino}, ${a.nlink} links` : 'absent'}; b.txt ${b ? `ino ${b.ino}, ${b.nlink} links` : 'absent'}`);
  const both = a !== undefined && b !== undefined && a.ino === b.ino;
  console.log(both ? 'cut half-way: the file has both names' : 'one name: as rename(2) leaves it');
  process.exitCode = both ? 1 : 0;
} finally {
  await again?.stop();
  await srv.stop();
}
