import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect, statusOf } from './helpers/ssh.js';

const NO_SUCH_FILE = 2;
const PERMISSION_DENIED = 3;
const FAILURE = 4;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const local = mkdtempSync(join(tmpdir(), 'sluice-sftp-'));
const ALL = 'all';

function keygen(name: string): { priv: string; pub: string } {
  const file = join(local, name);
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
  assert.equal(r.status, 0, String(r.stderr));
  return { priv: file, pub: `${file}.pub` };
}

describe('SFTP', () => {
  let srv: TestServer;
  let key: { priv: string; pub: string };
  let other: { priv: string; pub: string };
  let outside: string;

  before(async () => {
    key = keygen('alice_key');
    other = keygen('stranger_key');
    srv = await TestServer.start({
      // Debian 12's curl (libssh2 1.10) knows no encrypt-then-MAC MAC: listed as an operator serving it would.
      yaml: 'sftp:\n  algorithms:\n    hmac: [hmac-sha2-256-etm@openssh.com, hmac-sha2-512-etm@openssh.com, hmac-sha2-256]\n',
      users: [
        { name: 'alice', password: 'alice password', args: ['--perms', ALL, '--key', key.pub] },
        { name: 'keyonly', password: 'keyonly password', args: ['--key', key.pub, '--require-key'] },
        { name: 'dis', password: 'dis password' },
      ],
    });
    assert.equal(sluice(srv.dir, ['user', 'disable', 'dis'], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    outside = join(srv.dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret.txt'), 'SECRET');
    symlinkSync(outside, join(srv.home('alice'), 'planted-out'));
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  const login = (over: Partial<Parameters<typeof sshConnect>[0]> = {}) =>
    sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password', ...over });

  describe('ssh2 client (npm)', () => {
    let conn: ssh2.Client;
    let sftp: ssh2.SFTPWrapper;
    before(async () => {
      conn = await login();
      sftp = await sftpOf(conn);
    });
    after(() => conn.end());

    it('uploads, lists, downloads, renames, removes, makes and removes directories', async () => {
      await call((cb) => sftp.writeFile('/hello.txt', 'hello sftp', cb));
      assert.equal((await call<Buffer>((cb) => sftp.readFile('/hello.txt', cb))).toString(), 'hello sftp');
      await call((cb) => sftp.mkdir('/dir', cb));
      await call((cb) => sftp.rename('/hello.txt', '/dir/moved.txt', cb));
      const list = await call<ssh2.FileEntry[]>((cb) => sftp.readdir('/dir', cb));
      assert.deepEqual(list.map((e) => e.filename), ['moved.txt']);
      assert.match(list[0]?.longname ?? '', /^-rw-r--r-- +1 ftp +ftp +10 .* moved\.txt$/);
      assert.equal((list[0]?.attrs.mode ?? 0) & 0o170000, 0o100000, 'mode carries the file-type bits');
      assert.equal(list[0]?.attrs.mtime, Math.floor(list[0]?.attrs.mtime ?? 0));
      await call((cb) => sftp.unlink('/dir/moved.txt', cb));
      await call((cb) => sftp.rmdir('/dir', cb));
      assert.equal(await statusOf(call((cb) => sftp.stat('/dir', cb))), NO_SUCH_FILE);
    });

    it('plain RENAME refuses an existing target; posix-rename replaces it', async () => {
      await call((cb) => sftp.writeFile('/a.txt', 'A', cb));
      await call((cb) => sftp.writeFile('/b.txt', 'B', cb));
      assert.equal(await statusOf(call((cb) => sftp.rename('/a.txt', '/b.txt', cb))), FAILURE);
      await call((cb) => sftp.ext_openssh_rename('/a.txt', '/b.txt', cb));
      assert.equal(readFileSync(join(srv.home('alice'), 'b.txt'), 'utf8'), 'A');
    });

    it('creates a symlink inside the home and reads it back; chmod and utimes', async () => {
      await call((cb) => sftp.writeFile('/target.txt', 'T', cb));
      // ssh2 sends the draft's order (link, target) to a server that is not OpenSSH.
      await call((cb) => sftp.symlink('/target.txt', '/link.txt', cb));
      assert.ok(lstatSync(join(srv.home('alice'), 'link.txt')).isSymbolicLink());
      assert.equal(readlinkSync(join(srv.home('alice'), 'link.txt')), 'target.txt');
      assert.equal(await call<string>((cb) => sftp.readlink('/link.txt', cb)), 'target.txt');
      assert.equal((await call<Buffer>((cb) => sftp.readFile('/link.txt', cb))).toString(), 'T');
      await call((cb) => sftp.chmod('/target.txt', 0o600, cb));
      assert.equal(lstatSync(join(srv.home('alice'), 'target.txt')).mode & 0o777, 0o600);
      await call((cb) => sftp.utimes('/target.txt', 1_000_000_000, 1_000_000_000, cb));
      assert.equal(lstatSync(join(srv.home('alice'), 'target.txt')).mtimeMs, 1_000_000_000_000);
    });

    it('answers REALPATH of "" and "." with the home, and reports statvfs and limits', async () => {
      assert.equal(await call<string>((cb) => sftp.realpath('.', cb)), '/');
      assert.equal(await call<string>((cb) => sftp.realpath('', cb)), '/');
      assert.equal(await call<string>((cb) => sftp.realpath('/../../..', cb)), '/');
      const vfs = await call<{ f_bsize: number; f_blocks: number }>((cb) => sftp.ext_openssh_statvfs('/', cb));
      assert.ok(vfs.f_bsize > 0 && vfs.f_blocks > 0);
    });

    it('resumes an upload at an offset and a download from an offset', async () => {
      const h = await call<Buffer>((cb) => sftp.open('/resume.bin', 'w', cb));
      await call((cb) => sftp.write(h, Buffer.from('0123'), 0, 4, 0, cb));
      await call((cb) => sftp.close(h, cb));
      const h2 = await call<Buffer>((cb) => sftp.open('/resume.bin', 'r+', cb));
      await call((cb) => sftp.write(h2, Buffer.from('4567'), 0, 4, 4, cb));
      await call((cb) => sftp.close(h2, cb));
      assert.equal(readFileSync(join(srv.home('alice'), 'resume.bin'), 'utf8'), '01234567');
      const r = await call<Buffer>((cb) => sftp.open('/resume.bin', 'r', cb));
      const buf = Buffer.alloc(8);
      const n = await call<number>((cb) => sftp.read(r, buf, 0, 8, 5, cb));
      assert.equal(buf.subarray(0, n).toString(), '567');
      await call((cb) => sftp.close(r, cb));
    });

    it('round-trips a 50 MiB file byte for byte, with its SHA-256 in the audit record', async () => {
      const data = randomBytes(50 * 1024 * 1024);
      const src = join(local, 'big.bin');
      const back = join(local, 'big.back');
      writeFileSync(src, data);
      await call((cb) => sftp.fastPut(src, '/big.bin', { concurrency: 64 }, cb));
      assert.equal(sha256(readFileSync(join(srv.home('alice'), 'big.bin'))), sha256(data));
      await call((cb) => sftp.fastGet('/big.bin', back, { concurrency: 64 }, cb));
      assert.equal(sha256(readFileSync(back)), sha256(data));
      const rec = (await srv.auditUntil((l) => l.event === 'upload' && l.path === '/big.bin')).findLast((l) => l.event === 'upload' && l.path === '/big.bin');
      assert.equal(rec?.result, 'ok');
      assert.equal(rec?.protocol, 'sftp');
      assert.equal(rec?.sha256, sha256(data));
    });

    it('handles a non-ASCII name', async () => {
      const name = '/Grüße – 名前.txt';
      await call((cb) => sftp.writeFile(name, 'utf8', cb));
      assert.ok(existsSync(join(srv.home('alice'), name)));
      const list = await call<ssh2.FileEntry[]>((cb) => sftp.readdir('/', cb));
      assert.ok(list.some((e) => `/${e.filename}` === name));
    });

    it('pages READDIR at about 100 entries and ends with EOF', async () => {
      await call((cb) => sftp.mkdir('/many', cb));
      for (let i = 0; i < 250; i++) writeFileSync(join(srv.home('alice'), 'many', `f${i}`), '');
      const list = await call<ssh2.FileEntry[]>((cb) => sftp.readdir('/many', cb));
      assert.equal(list.length, 250);
    });

    const traversal = '../../../../outside/secret.txt';
    it('keeps ".." traversal inside the home in every path-taking request', async () => {
      const codes = await Promise.all([
        statusOf(call((cb) => sftp.stat(traversal, cb))),
        statusOf(call((cb) => sftp.lstat(traversal, cb))),
        statusOf(call((cb) => sftp.open(traversal, 'r', cb))),
        statusOf(call((cb) => sftp.opendir('../../../outside', cb))),
        statusOf(call((cb) => sftp.unlink(traversal, cb))),
        statusOf(call((cb) => sftp.rename(traversal, '/stolen', cb))),
        statusOf(call((cb) => sftp.rmdir('../../../outside', cb))),
        statusOf(call((cb) => sftp.readlink(traversal, cb))),
        statusOf(call((cb) => sftp.setstat(traversal, { mode: 0o777 }, cb))),
        statusOf(call((cb) => sftp.ext_openssh_hardlink(traversal, '/hard', cb))),
        statusOf(call((cb) => sftp.ext_openssh_rename(traversal, '/stolen2', cb))),
      ]);
      for (const c of codes) assert.equal(c, NO_SUCH_FILE);
      assert.equal(await call<string>((cb) => sftp.realpath('../../../outside', cb)), '/outside');
      await call((cb) => sftp.writeFile('../../../escaped.txt', 'x', cb));
      assert.ok(existsSync(join(srv.home('alice'), 'escaped.txt')));
      assert.equal(readFileSync(join(outside, 'secret.txt'), 'utf8'), 'SECRET');
    });

    it('refuses reading, writing and listing through a planted link that leads out', async () => {
      assert.equal(await statusOf(call((cb) => sftp.readFile('/planted-out/secret.txt', cb))), PERMISSION_DENIED);
      assert.equal(await statusOf(call((cb) => sftp.writeFile('/planted-out/new.txt', 'x', cb))), PERMISSION_DENIED);
      assert.equal(await statusOf(call((cb) => sftp.readdir('/planted-out', cb))), PERMISSION_DENIED);
      assert.ok(!existsSync(join(outside, 'new.txt')));
    });

    it('refuses SYMLINK and HARDLINK to a target outside the home', async () => {
      assert.equal(await statusOf(call((cb) => sftp.symlink('../../../outside/secret.txt', '/evil', cb))), PERMISSION_DENIED);
      assert.equal(await statusOf(call((cb) => sftp.ext_openssh_hardlink('/planted-out/secret.txt', '/hard', cb))), PERMISSION_DENIED);
      assert.ok(!existsSync(join(srv.home('alice'), 'evil')) && !existsSync(join(srv.home('alice'), 'hard')));
    });

    it('answers an unknown extension with OP_UNSUPPORTED and keeps serving', async () => {
      const sftpAny = sftp as unknown as { _extensions: Record<string, string> };
      assert.equal(sftpAny._extensions['limits@openssh.com'], '1');
      assert.equal(sftpAny._extensions['posix-rename@openssh.com'], '1');
      assert.equal(await call<string>((cb) => sftp.realpath('.', cb)), '/');
    });
  });

  describe('refusals', () => {
    // exec serves scp only: test/scp.test.ts.
    it('refuses shell requests and TCP forwarding', async () => {
      const c = await login();
      await assert.rejects(new Promise((res, rej) => c.shell((err, s) => (err ? rej(err) : res(s)))));
      await assert.rejects(new Promise((res, rej) => c.forwardOut('127.0.0.1', 1, '127.0.0.1', srv.ftpPort, (err, s) => (err ? rej(err) : res(s)))));
      await assert.rejects(new Promise((res, rej) => c.forwardIn('127.0.0.1', 0, (err) => (err ? rej(err) : res(null)))));
      c.end();
    });

    it('logs a few refusals of a connection one by one, then counts them: a flood of requests cannot fill the log', async () => {
      const c = await login();
      const n = 200;
      const since = srv.log.length;
      await Promise.all(
        Array.from({ length: n }, () => assert.rejects(new Promise((res, rej) => c.forwardIn('127.0.0.1', 0, (err) => (err ? rej(err) : res(null)))))),
      );
      c.end();
      const lines = await srv.refusalLines(since, n, 'global request refused');
      assert.equal(lines, 5, `lines for ${n} refusals`);
    });

    // Found by a review: each session channel refused past sftp.maxChannelsPerConnection was a warn line of its own.
    it('counts session channels refused past the limit as it counts other refusals: they cannot fill the log either', async () => {
      const c = await login();
      const open = await Promise.all(Array.from({ length: 10 }, () => sftpOf(c)));
      assert.equal(open.length, 10);
      const n = 200;
      const since = srv.log.length;
      await Promise.all(
        Array.from({ length: n }, () => assert.rejects(new Promise((res, rej) => c.exec('scp -f x', (err, s) => (err ? rej(err) : res(s)))))),
      );
      c.end();
      const lines = await srv.refusalLines(since, n, 'session channel refused: too many on this connection');
      assert.equal(lines, 5, `lines for ${n} refused channels`);
    });

    it('refuses a disabled user, a wrong password, a wrong key, and a password for a key-only user', async () => {
      await assert.rejects(login({ username: 'dis', password: 'dis password' }), /authentication/i);
      await assert.rejects(login({ password: 'wrong' }), /authentication/i);
      await assert.rejects(login({ password: undefined, privateKey: readFileSync(other.priv) }), /authentication/i);
      await assert.rejects(login({ username: 'keyonly', password: 'keyonly password' }), /authentication/i);
      const c = await login({ username: 'keyonly', password: undefined, privateKey: readFileSync(key.priv) });
      c.end();
      // keyonly's logout: after every refusal above, and her login.
      const audit = await srv.auditUntil((l) => l.event === 'logout' && l.user === 'keyonly');
      const reasons = audit.filter((l) => l.event === 'login-failed').map((l) => l.reason);
      for (const r of ['disabled', 'bad-password', 'key-required']) assert.ok(reasons.includes(r), r);
      // An unknown key is refused when the client asks about it, before any signature:
      // that query is neither a login nor a failure in the audit trail.
      assert.ok(!audit.some((l) => l.event === 'login-failed' && l.method === 'publickey'));
      assert.ok(audit.some((l) => l.event === 'login' && l.user === 'keyonly' && l.method === 'publickey'));
    });
  });

  describe('OpenSSH, scp and curl', () => {
    const opts = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
    const sftpBatch = (commands: string[], auth: 'key' | 'password') => {
      const batch = join(local, `batch-${Math.random()}`);
      writeFileSync(batch, commands.join('\n') + '\n');
      const base = ['-P', String(srv.sftpPort), ...opts, '-b', batch];
      const r = auth === 'key'
        ? spawnSync('sftp', [...base, '-i', key.priv, 'alice@127.0.0.1'], { encoding: 'utf8', cwd: local, timeout: 60_000 })
        : spawnSync('sshpass', ['-p', 'alice password', 'sftp', '-o', 'BatchMode=no', ...base, 'alice@127.0.0.1'], { encoding: 'utf8', cwd: local, timeout: 60_000 });
      return r;
    };

    it('OpenSSH sftp -b with a key: put, ls, get, reget, reput, rename, mkdir, rmdir, rm, symlink, chmod', () => {
      chmodSync(key.priv, 0o600);
      const data = randomBytes(3 * 1024 * 1024);
      writeFileSync(join(local, 'os.bin'), data);
      writeFileSync(join(local, 'half.bin'), data.subarray(0, 1024 * 1024));
      writeFileSync(join(local, 'quarter.bin'), data.subarray(0, 512 * 1024));
      const r = sftpBatch([
        'mkdir osdir', 'cd osdir', 'put os.bin', 'ls -l', 'get os.bin os.back',
        'reget os.bin half.bin', 'rename os.bin os2.bin', 'symlink os2.bin oslink', 'chmod 640 os2.bin',
        'put quarter.bin part.bin', 'reput os.bin part.bin',
        'rm oslink', 'mkdir gone', 'rmdir gone', 'ls',
      ], 'key');
      assert.equal(r.status, 0, r.stderr + r.stdout);
      const dir = join(srv.home('alice'), 'osdir');
      assert.equal(sha256(readFileSync(join(local, 'os.back'))), sha256(data));
      assert.equal(sha256(readFileSync(join(local, 'half.bin'))), sha256(data), 'reget completed the partial download');
      assert.equal(sha256(readFileSync(join(dir, 'part.bin'))), sha256(data), 'reput completed the partial upload');
      assert.equal(lstatSync(join(dir, 'os2.bin')).mode & 0o777, 0o640);
      assert.ok(!existsSync(join(dir, 'oslink')) && !existsSync(join(dir, 'gone')));
    });

    it('OpenSSH sftp with a password (sshpass), and a client-made symlink out is refused', (t) => {
      if (spawnSync('which', ['sshpass']).status !== 0) {
        if (process.env.CI) assert.fail('sshpass must be installed in CI');
        t.skip('sshpass is not installed (.ci/run installs it)');
        return;
      }
      const r = sftpBatch(['put os.bin pw.bin', 'ls'], 'password');
      assert.equal(r.status, 0, r.stderr);
      assert.ok(existsSync(join(srv.home('alice'), 'pw.bin')));
      const bad = sftpBatch(['symlink ../../../../outside/secret.txt evil'], 'password');
      assert.notEqual(bad.status, 0);
      assert.ok(!existsSync(join(srv.home('alice'), 'evil')));
    });

    it('OpenSSH sftp: 50 MiB byte-exact, a non-ASCII name, rename over an existing file (posix-rename)', () => {
      const data = randomBytes(50 * 1024 * 1024);
      writeFileSync(join(local, 'os50.bin'), data);
      writeFileSync(join(local, 'Grüße – 名前.txt'), 'unicode via openssh');
      const r = sftpBatch([
        'put os50.bin', 'get os50.bin os50.back', 'put "Grüße – 名前.txt"', 'put os50.bin other.bin', 'rename other.bin os50.bin', 'ls',
      ], 'key');
      assert.equal(r.status, 0, r.stderr + r.stdout);
      assert.equal(sha256(readFileSync(join(local, 'os50.back'))), sha256(data));
      assert.equal(readFileSync(join(srv.home('alice'), 'Grüße – 名前.txt'), 'utf8'), 'unicode via openssh');
      assert.ok(!existsSync(join(srv.home('alice'), 'other.bin')), 'renamed over the existing file');
      assert.equal(sha256(readFileSync(join(srv.home('alice'), 'os50.bin'))), sha256(data));
    });

    it('scp uploads and downloads (over SFTP)', () => {
      const src = join(local, 'scp.txt');
      writeFileSync(src, 'via scp');
      const base = ['-P', String(srv.sftpPort), ...opts, '-i', key.priv];
      assert.equal(spawnSync('scp', [...base, src, 'alice@127.0.0.1:scp.txt']).status, 0);
      assert.equal(readFileSync(join(srv.home('alice'), 'scp.txt'), 'utf8'), 'via scp');
      assert.equal(spawnSync('scp', [...base, 'alice@127.0.0.1:scp.txt', join(local, 'scp.back')]).status, 0);
      assert.equal(readFileSync(join(local, 'scp.back'), 'utf8'), 'via scp');
    });

    it('curl sftp:// (libssh2): upload, list, download, resume both ways, rename, mkdir, rmdir, symlink, chmod, rm, non-ASCII', () => {
      const src = join(local, 'curl.txt');
      writeFileSync(src, 'via curl sftp 0123456789');
      const url = `sftp://127.0.0.1:${srv.sftpPort}`;
      const base = ['-sS', '-k', '-u', 'alice:alice password'];
      const curl = (args: string[]) => spawnSync('curl', [...base, ...args], { encoding: 'utf8' });
      assert.equal(curl(['-T', src, `${url}/curl.txt`]).status, 0);
      assert.match(curl([`${url}/`]).stdout, /curl\.txt/);
      assert.equal(curl([`${url}/curl.txt`]).stdout, 'via curl sftp 0123456789');
      // Resume a download into a local prefix, and an upload onto a remote prefix.
      const partial = join(local, 'curl.part');
      writeFileSync(partial, 'via curl');
      assert.equal(curl(['-C', '-', '-o', partial, `${url}/curl.txt`]).status, 0);
      assert.equal(readFileSync(partial, 'utf8'), 'via curl sftp 0123456789');
      writeFileSync(join(srv.home('alice'), 'curl-up.txt'), 'via curl sf');
      assert.equal(curl(['-C', '-', '-T', src, `${url}/curl-up.txt`]).status, 0);
      assert.equal(readFileSync(join(srv.home('alice'), 'curl-up.txt'), 'utf8'), 'via curl sftp 0123456789');
      const quote = ['mkdir /cdir', 'rename /curl.txt /cdir/c.txt', 'chmod 600 /cdir/c.txt'];
      assert.equal(curl([...quote.flatMap((q) => ['-Q', q]), `${url}/`]).status, 0);
      // Debian's libssh2 1.10.0-3+deb12u1 reads a SYMLINK's STATUS reply from the wrong offset (the
      // request id as the code; libssh2/libssh2#1731) and fails with 21 after the link was made: the
      // link itself, checked below, is what the server is judged on.
      assert.ok([0, 21].includes(curl(['-Q', 'symlink /cdir/c.txt /clink', `${url}/`]).status ?? -1));
      assert.equal(lstatSync(join(srv.home('alice'), 'cdir', 'c.txt')).mode & 0o777, 0o600);
      assert.ok(lstatSync(join(srv.home('alice'), 'clink')).isSymbolicLink());
      assert.equal(readFileSync(join(srv.home('alice'), 'clink'), 'utf8'), 'via curl sftp 0123456789');
      assert.equal(curl(['-Q', 'rm /clink', '-Q', 'rm /cdir/c.txt', '-Q', 'rmdir /cdir', `${url}/`]).status, 0);
      assert.ok(!existsSync(join(srv.home('alice'), 'cdir')) && !existsSync(join(srv.home('alice'), 'clink')));
      const uni = join(local, 'Ünï – 名.txt');
      writeFileSync(uni, 'unicode via curl');
      assert.equal(curl(['-T', uni, `${url}/${encodeURIComponent('Ünï – 名.txt')}`]).status, 0);
      assert.equal(readFileSync(join(srv.home('alice'), 'Ünï – 名.txt'), 'utf8'), 'unicode via curl');
    });

    it('the server survives everything above', () => {
      assert.ok(srv.alive);
    });
  });
});

describe('SFTP transport limits', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      // The defender would ban 127.0.0.1 for the failures below: these tests are about the connection's own limits.
      yaml: 'limits:\n  maxSessions: 50\n  maxSessionsPerIp: 3\nsftp:\n  idleTimeout: 10\nauth:\n  maxTries: 4\ndefender:\n  threshold: 100\n',
      users: [{ name: 'erin', password: 'erin password' }],
    });
  });
  after(() => srv.stop());

  const ssh = (args: string[]) =>
    spawnSync('ssh', ['-p', String(srv.sftpPort), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', ...args, 'erin@127.0.0.1', 'true'], { encoding: 'utf8', timeout: 30_000 });

  it('offers no SHA-1 key exchange or MAC, and no CBC cipher', () => {
    for (const opts of [['KexAlgorithms=diffie-hellman-group14-sha1'], ['Ciphers=aes128-cbc'],
      ['Ciphers=aes128-ctr', 'MACs=hmac-sha1'], ['HostKeyAlgorithms=ssh-rsa']]) {
      const r = ssh(opts.flatMap((o) => ['-o', o]));
      assert.match(r.stderr, /no matching|Unable to negotiate/i, opts.join(' '));
    }
  });

  it('closes the connection after auth.maxTries failed password attempts', async () => {
    let tries = 0;
    const { default: ssh2 } = await import('ssh2');
    const outcome = await new Promise<string>((resolve) => {
      const c = new ssh2.Client();
      c.on('error', (e) => resolve(String(e)));
      c.on('close', () => resolve('closed'));
      c.connect({
        host: '127.0.0.1',
        port: srv.sftpPort,
        username: 'erin',
        authHandler: (_methods, _partial, next) => {
          tries++;
          if (tries > 10) return next(false as never);
          next({ type: 'password', username: 'erin', password: `wrong ${tries}` } as never);
        },
      });
    });
    assert.notEqual(outcome, 'ready');
    // The client may try once more before it sees the disconnect; the server counted four.
    // A fifth check would be recorded as it was made: a failed login from another address, made now, is
    // recorded after it, and waited for.
    await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'nobody', password: 'no password', localAddress: '127.0.0.8' }));
    const failed = (await srv.auditUntil((l) => l.event === 'login-failed' && l.ip === '127.0.0.8')).filter((l) => l.event === 'login-failed' && l.user === 'erin');
    assert.equal(failed.length, 4);
    assert.ok(tries <= 5);
  });

  it('closes an idle connection after the idle timeout', async () => {
    const c = await sshConnect({ port: srv.sftpPort, username: 'erin', password: 'erin password' });
    await sftpOf(c);
    const closed = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 20_000);
      c.once('close', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    assert.ok(closed, 'closed by the server within 20 s (idle timeout 10 s)');
  });

  it('refuses connections past the per-address limit, and frees the slots', async () => {
    const open = await Promise.all([0, 1, 2].map(() => sshConnect({ port: srv.sftpPort, username: 'erin', password: 'erin password' })));
    await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'erin', password: 'erin password' }));
    // Their ends seen here first (a loaded machine may take longer than the 300 ms that follow), then the server's.
    const closed = open.map((c) => new Promise((resolve) => c.once('close', () => resolve(undefined))));
    open.forEach((c) => c.end());
    await Promise.all(closed);
    await new Promise((r) => setTimeout(r, 300));
    const again = await sshConnect({ port: srv.sftpPort, username: 'erin', password: 'erin password' });
    again.end();
    assert.ok(srv.alive);
  });
});
