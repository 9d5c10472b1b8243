import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { FXP, STATUS, Writer } from '../src/sftp/codec.js';
import { sluice } from './helpers/cli.js';
import { RawFtp, listingLines } from './helpers/ftp-raw.js';
import { programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';
import { call, initialised, sftpOf, sshConnect, statusOf } from './helpers/ssh.js';

/*
 * A path ending in "/" names a directory, in every operation: POSIX says so
 * (stat("f/") of a file is ENOTDIR, open("new/", O_CREAT) makes no file new),
 * and OpenSSH's sftp-server and vsftpd, which hand the path to the kernel,
 * answer so. sluice's paths dropped the final "/" before anything looked: a
 * client's `f/` was the file f to every operation (RETR, HASH and md5sum of
 * `f/` read f, STOR `new/` made a file new, DELE `f/` removed f: a known
 * defect, surveyed with real clients). Each refusal below leaves the home as
 * it was and the trail without a record of anything done; directories named
 * so work as before.
 */

const USER = 'alice';
const PASSWORD = 'alice password';

/** f a file, d a directory holding x, e an empty one, ld and lf symlinks to d and f. */
function plant(home: string): void {
  for (const name of readdirSync(home)) rmSync(join(home, name), { recursive: true, force: true });
  writeFileSync(join(home, 'f'), 'hello\n');
  mkdirSync(join(home, 'd'));
  writeFileSync(join(home, 'd', 'x'), 'x\n');
  mkdirSync(join(home, 'e'));
  symlinkSync('d', join(home, 'ld'));
  symlinkSync('f', join(home, 'lf'));
}

/** Every name under `dir` with what it is: a file's mode and bytes, a link's text. */
function tree(dir: string, prefix = ''): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const path = join(dir, name);
      const st = lstatSync(path);
      if (st.isSymbolicLink()) return [`${prefix}${name} -> ${readlinkSync(path)}`];
      if (st.isDirectory()) return [`${prefix}${name}/`, ...tree(path, `${prefix}${name}/`)];
      return [`${prefix}${name} ${(st.mode & 0o777).toString(8)} ${JSON.stringify(readFileSync(path, 'utf8'))}`];
    });
}

const PLANTED = ['d/', 'd/x 644 "x\\n"', 'e/', 'f 644 "hello\\n"', 'ld -> d', 'lf -> f'];

describe('a path ending in "/" names a directory, in every operation', () => {
  let srv: TestServer;
  let home: string;
  let local: string;
  let markers = 0;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: USER, password: PASSWORD, args: ['--perms', 'all'] }] });
    // A drop box: names there may be given, never learnt.
    assert.equal(sluice(srv.dir, ['user', 'perm', USER, '/drop', 'upload']).code, 0);
    home = srv.home(USER);
    local = mkdtempSync(join(tmpdir(), 'sluice-slash-'));
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });
  beforeEach(() => plant(home));

  const marker = () => `/marker-${++markers}`;
  const isMarker = (r: Record<string, unknown>) => r.event === 'mkdir' && /^\/marker-\d+$/.test(r.path as string);

  /**
   * The session that makes `marker` (a directory, its last act) did nothing
   * else on record since its marker before, if any: no transfer, removal,
   * move or change. Polling cannot prove a record absent: the marker's record
   * comes after every one of its acts.
   */
  async function nothingOnRecord(marker: string): Promise<void> {
    const records = await srv.auditUntil((r) => r.event === 'mkdir' && r.path === marker);
    const at = records.findIndex((r) => r.event === 'mkdir' && r.path === marker);
    assert.ok(at >= 0, `the marker ${marker} is on record`);
    const session = records[at]?.session;
    const ours = records.slice(0, at).filter((r) => r.session === session);
    const since = ours.slice(ours.findLastIndex(isMarker) + 1);
    const acts = since.filter((r) => !['login', 'logout'].includes(r.event as string));
    assert.deepEqual(acts.map((r) => `${r.event} ${r.path}`), [], 'nothing was done');
  }

  const count = (records: Record<string, unknown>[], event: string) => records.filter((r) => r.event === event).length;

  /**
   * Logins on record once every session so far has ended (each login's logout on record), after a
   * flush of the trail (the server writes at least every second): a session of the test before
   * whose login was not yet on record would be counted as one of the next test's.
   */
  async function settledLogins(): Promise<number> {
    await srv.audit();
    return count(await srv.auditWhen((rs) => count(rs, 'login') === count(rs, 'logout')), 'login');
  }

  /**
   * Once `sessions` more have logged in since `before` (settledLogins) and
   * ended, none of them read, wrote or hashed a file under `paths`: for clients whose
   * sessions end with their process (scp, sftp, ssh), which a marker of
   * theirs cannot follow. A session's logout is on record after its acts.
   */
  async function noTransferOf(paths: string[], before: number, sessions: number): Promise<void> {
    const ended = (rs: Record<string, unknown>[]) => count(rs, 'login') === before + sessions && count(rs, 'logout') === before + sessions;
    const records = await srv.auditWhen(ended);
    assert.ok(ended(records), 'the sessions ended on record');
    const since = records.indexOf(records.filter((r) => r.event === 'login')[before] as Record<string, unknown>);
    const done = records.slice(since).filter((r) => ['download', 'upload', 'checksum'].includes(r.event as string) && paths.includes(r.path as string));
    assert.deepEqual(done.map((r) => `${r.event} ${r.path}`), []);
  }

  describe('FTP', () => {
    async function ftp(): Promise<RawFtp> {
      return RawFtp.secureLogin(srv.ftpPort, USER, PASSWORD);
    }

    /** The home as planted, and nothing on record of the session before a marker made now through `c`. */
    async function untouched(c: Awaited<ReturnType<typeof ftp>>): Promise<void> {
      const m = marker();
      assert.equal((await c.cmd(`MKD ${m}`)).code, 257);
      rmSync(join(home, m), { recursive: true });
      assert.deepEqual(tree(home), PLANTED);
      await nothingOnRecord(m);
    }

    /** Each command refused with `reply` (a data command before its 150), the home as planted and nothing on record. */
    async function refused(commands: string[], data = false, reply = '550 Not a directory.'): Promise<void> {
      const c = await ftp();
      try {
        for (const command of commands) {
          if (data) await c.passive(true);
          const r = await c.cmd(command);
          assert.equal(r.text, reply, command);
        }
        await untouched(c);
      } finally {
        c.close();
      }
    }

    it('read: RETR of `f/`, `f/.` and of a symlink to a file `lf/` reads nothing', () => refused(['RETR f/', 'RETR f/.', 'RETR lf/', 'RETR d/x/'], true));

    // As open(2) with O_CREAT refuses any name ending in "/" (EISDIR), there or not.
    it('write and create: STOR and APPE of `f/` change nothing, of `new/` make nothing', () =>
      refused(['STOR f/', 'APPE f/', 'STOR new/', 'APPE new/', 'STOR d/x/'], true, '550 Is a directory.'));

    it('remove: DELE of `f/`, `lf/` and `ld/` removes nothing', () => refused(['DELE f/', 'DELE lf/', 'DELE ld/']));

    it('rename: RNFR `f/` and `ld/` are refused, RNTO `new/` of a file too', async () => {
      await refused(['RNFR f/']);
      const c = await ftp();
      try {
        for (const [from, to] of [['f', 'new/'], ['f', 'lf/'], ['ld/', 'g']]) {
          // A source named as a directory is refused by RNTO: RNFR only looked (ld/ leads to one).
          assert.equal((await c.cmd(`RNFR ${from}`)).code, 350, from);
          assert.equal((await c.cmd(`RNTO ${to}`)).text, '550 Not a directory.', `${from} -> ${to}`);
        }
        await untouched(c);
      } finally {
        c.close();
      }
    });

    it('metadata: SIZE, MDTM, MLST, STAT, SITE CHMOD and MFMT of `f/` tell and change nothing', () =>
      refused(['SIZE f/', 'MDTM f/', 'MLST f/', 'STAT f/', 'SITE CHMOD 600 f/', 'MFMT 20200101000000 f/']));

    it('listing: LIST and NLST of `f/` list nothing', () => refused(['LIST f/', 'NLST f/'], true));

    it('checksum: HASH and XSHA256 of `f/` read nothing', () => refused(['HASH f/', 'XSHA256 f/']));

    it('a drop box answers `f/` and `new/` as any name there: the one refusal, and nothing made', async () => {
      mkdirSync(join(home, 'drop'));
      writeFileSync(join(home, 'drop', 'f'), 'secret\n');
      const c = await ftp();
      try {
        for (const command of ['STOR drop/f/', 'STOR drop/new/', 'APPE drop/new/', 'STOR drop/f']) {
          await c.passive(true);
          assert.equal((await c.cmd(command)).text, '550 Permission denied.', command);
        }
      } finally {
        c.close();
      }
      assert.deepEqual(tree(join(home, 'drop')), ['f 644 "secret\\n"']);
    });

    it('directories named so work as before: CWD, MKD, RMD, LIST, NLST, MLSD, MLST, RNFR/RNTO', async () => {
      const c = await ftp();
      try {
        assert.equal((await c.cmd('CWD d/')).code, 250);
        assert.equal((await c.cmd('PWD')).text, '257 "/d" is the current directory.');
        assert.equal((await c.cmd('CWD /ld/')).code, 250);
        assert.equal((await c.cmd('CWD /')).code, 250);
        assert.equal((await c.cmd('MKD new/')).text, '257 "/new" created.');
        assert.equal((await c.cmd('RMD e/')).code, 250);
        assert.match((await listingLines(c, 'LIST d/', true)).join('\n'), / x$/);
        assert.deepEqual(await listingLines(c, 'NLST d/', true), ['d/x']);
        assert.deepEqual(await listingLines(c, 'NLST ld/', true), ['ld/x']);
        assert.match((await listingLines(c, 'MLSD d/', true)).join('\n'), /type=file;.* x$/);
        assert.match((await c.cmd('MLST d/')).text, /type=dir;/);
        assert.equal((await c.cmd('RNFR d/')).code, 350);
        assert.equal((await c.cmd('RNTO g/')).code, 250);
        assert.equal((await c.cmd('RNFR g')).code, 350);
        assert.equal((await c.cmd('RNTO new/')).code, 250, 'a directory replaces an empty one named so');
      } finally {
        c.close();
      }
      assert.deepEqual(tree(home), ['f 644 "hello\\n"', 'ld -> d', 'lf -> f', 'new/', 'new/x 644 "x\\n"']);
    });
  });

  describe('SFTP', () => {
    let conn: ssh2.Client;
    let sftp: ssh2.SFTPWrapper;
    before(async () => {
      conn = await sshConnect({ port: srv.sftpPort, username: USER, password: PASSWORD });
      sftp = await sftpOf(conn);
    });
    after(() => conn.end());

    /** One request by hand (extensions ssh2 does not send): its STATUS code, or the type of another reply. */
    async function raw(build: (w: Writer) => Writer): Promise<number | string> {
      const { ch, next } = await initialised(conn);
      try {
        ch.write(build(new Writer(FXP.EXTENDED, 1)).finish());
        const reply = await next();
        return reply[0] === FXP.STATUS ? reply.readUInt32BE(5) : `reply type ${reply[0]}`;
      } finally {
        ch.close();
      }
    }

    /**
     * Each request answered `code`, by default NO_SUCH_FILE, as OpenSSH's sftp-server answers ENOTDIR; the home
     * as planted, nothing on record.
     */
    async function refused(requests: [string, () => Promise<unknown>][], code: number = STATUS.NO_SUCH_FILE): Promise<void> {
      for (const [what, request] of requests) assert.equal(await statusOf(request()), code, what);
      const m = marker();
      await call((cb) => sftp.mkdir(m, cb));
      rmSync(join(home, m), { recursive: true });
      assert.deepEqual(tree(home), PLANTED);
      await nothingOnRecord(m);
    }

    const openClose = (path: string, flags: ssh2.OpenMode) => async () => {
      const handle = await call<Buffer>((cb) => sftp.open(path, flags, cb));
      await call((cb) => sftp.close(handle, cb));
    };

    it('read: OPEN of `f/` and `lf/` for reading', () => refused([['f/', openClose('f/', 'r')], ['lf/', openClose('lf/', 'r')]]));

    it('write: OPEN of `f/` for writing without CREAT', () => refused([['f/ r+', openClose('f/', 'r+')]]));

    // As OpenSSH's sftp-server answers open(2)'s EISDIR for a name ending in "/" opened with O_CREAT, there or not.
    it('create: OPEN with CREAT of `new/`, `f/` and `lf/` is answered FAILURE (EISDIR)', () =>
      refused(
        [
          ['new/ w', openClose('new/', 'w')],
          ['new/ wx', openClose('new/', 'wx')],
          ['new/ a', openClose('new/', 'a')],
          ['f/ w', openClose('f/', 'w')],
          ['f/ a', openClose('f/', 'a')],
          ['lf/ w', openClose('lf/', 'w')],
        ],
        STATUS.FAILURE,
      ));

    // As OpenSSH's sftp-server answers EINVAL: readlink("ld/") reads the directory the link leads to, no link.
    it('READLINK of `ld/`, as of `d` or `f`, is answered BAD_MESSAGE (EINVAL)', () =>
      refused(
        ['ld/', 'd', 'f'].map((p) => [p, () => call((cb) => sftp.readlink(p, cb))] as [string, () => Promise<unknown>]),
        STATUS.BAD_MESSAGE,
      ));

    // As OpenSSH's sftp-server resolves it: the name before a final "/" must be there (a file's too).
    it('REALPATH of `new/` is answered NO_SUCH_FILE; of `f/`, `lf/` and `new` a path', async () => {
      await refused([['new/', () => call((cb) => sftp.realpath('new/', cb))]]);
      for (const [asked, path] of [['f/', '/f'], ['lf/', '/f'], ['new', '/new']]) assert.equal(await call<string>((cb) => sftp.realpath(asked as string, cb)), path, asked);
    });

    it('remove: REMOVE of `f/`, `lf/` and `ld/`', () =>
      refused(['f/', 'lf/', 'ld/'].map((p) => [p, () => call((cb) => sftp.unlink(p, cb))] as [string, () => Promise<unknown>])));

    it('rename and links: RENAME, posix-rename, hardlink and SYMLINK to or from a name ending in "/"', () =>
      refused([
        ['rename f/ g', () => call((cb) => sftp.rename('f/', 'g', cb))],
        ['rename f new/', () => call((cb) => sftp.rename('f', 'new/', cb))],
        ['rename ld/ g', () => call((cb) => sftp.rename('ld/', 'g', cb))],
        ['posix-rename f/ g', () => call((cb) => sftp.ext_openssh_rename('f/', 'g', cb))],
        ['posix-rename f lf/', () => call((cb) => sftp.ext_openssh_rename('f', 'lf/', cb))],
        ['hardlink f/ h', () => call((cb) => sftp.ext_openssh_hardlink('f/', 'h', cb))],
        ['hardlink f h/', () => call((cb) => sftp.ext_openssh_hardlink('f', 'h/', cb))],
        ['symlink new/ -> f', () => call((cb) => sftp.symlink('f', 'new/', cb))],
      ]));

    it('metadata: STAT, LSTAT, SETSTAT (mode, size), lsetstat, statvfs and READLINK of `f/` or `lf/`', () =>
      refused([
        ['stat f/', () => call((cb) => sftp.stat('f/', cb))],
        ['lstat f/', () => call((cb) => sftp.lstat('f/', cb))],
        ['lstat lf/', () => call((cb) => sftp.lstat('lf/', cb))],
        ['setstat f/ mode', () => call((cb) => sftp.setstat('f/', { mode: 0o600 }, cb))],
        ['setstat f/ size', () => call((cb) => sftp.setstat('f/', { size: 0 }, cb))],
        ['lsetstat f/', async () => {
          const code = await raw((w) => w.string('lsetstat@openssh.com').string('f/').attrs({ permissions: 0o600 }));
          if (code !== STATUS.OK) throw Object.assign(new Error('lsetstat'), { code });
        }],
        ['statvfs f/', () => call((cb) => sftp.ext_openssh_statvfs('f/', cb))],
        ['readlink lf/', () => call((cb) => sftp.readlink('lf/', cb))],
      ]));

    it('checksum: check-file-name of `f/`', () =>
      refused([
        ['check-file-name f/', async () => {
          const code = await raw((w) => w.string('check-file-name').string('f/').string('sha256').uint64(0).uint64(0).uint32(0));
          throw Object.assign(new Error('check-file-name'), { code });
        }],
      ]));

    it('a drop box answers `f/` and `new/` as any name there: OPEN with CREAT the one refusal, REALPATH the path as named', async () => {
      mkdirSync(join(home, 'drop'));
      writeFileSync(join(home, 'drop', 'f'), 'secret\n');
      for (const p of ['drop/f/', 'drop/new/', 'drop/f']) assert.equal(await statusOf(openClose(p, 'w')()), STATUS.PERMISSION_DENIED, p);
      for (const p of ['drop/f', 'drop/new']) assert.equal(await call<string>((cb) => sftp.realpath(`${p}/`, cb)), `/${p}`);
      assert.deepEqual(tree(join(home, 'drop')), ['f 644 "secret\\n"']);
    });

    it('directories named so work as before: STAT, OPENDIR, MKDIR, RMDIR, RENAME, REALPATH', async () => {
      assert.ok((await call<ssh2.Stats>((cb) => sftp.stat('d/', cb))).isDirectory());
      for (const dir of ['d/', 'ld/']) {
        const handle = await call<Buffer>((cb) => sftp.opendir(dir, cb));
        await call((cb) => sftp.close(handle, cb));
      }
      assert.equal(await call<string>((cb) => sftp.realpath('d/', cb)), '/d');
      await call((cb) => sftp.mkdir('new/', cb));
      await call((cb) => sftp.rmdir('e/', cb));
      await call((cb) => sftp.rename('d/', 'g/', cb));
      await call((cb) => sftp.ext_openssh_rename('g/', 'new/', cb));
      assert.deepEqual(tree(home), ['f 644 "hello\\n"', 'ld -> d', 'lf -> f', 'new/', 'new/x 644 "x\\n"']);
    });

    it('LSTAT of `ld/` describes the directory it leads to, as lstat("ld/") does (OpenSSH\'s `ls ld/` looks so)', async () => {
      assert.ok((await call<ssh2.Stats>((cb) => sftp.lstat('ld/', cb))).isDirectory());
    });

    it('a symlink\'s text ending in "/" names a directory: kept when made, and no file is read through it', async () => {
      await call((cb) => sftp.symlink('d/', 'sd', cb));
      await call((cb) => sftp.symlink('f/', 'sf', cb));
      assert.equal(readlinkSync(join(home, 'sd')), 'd/');
      assert.equal(readlinkSync(join(home, 'sf')), 'f/');
      assert.ok((await call<ssh2.Stats>((cb) => sftp.stat('sd', cb))).isDirectory());
      // One made on the host, as a link the kernel would refuse to read a file through.
      symlinkSync('f/', join(home, 'hf'));
      for (const link of ['sf', 'hf']) assert.equal(await statusOf(openClose(link, 'r')()), STATUS.NO_SUCH_FILE, link);
    });
  });

  describe('OpenSSH clients, scp and checksum commands', () => {
    const opts = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=no'];
    const skip = programMissing('sshpass') || programMissing('sftp', 'openssh-client');

    function withPassword(program: string, args: string[]) {
      return spawnSync('sshpass', ['-p', PASSWORD, program, ...opts, ...args], { encoding: 'utf8', cwd: local, timeout: 60_000 });
    }

    function sftpBatch(commands: string[]) {
      const batch = join(local, 'batch');
      writeFileSync(batch, commands.join('\n') + '\n');
      return withPassword('sftp', ['-P', String(srv.sftpPort), '-b', batch, `${USER}@127.0.0.1`]);
    }

    it('sftp: `get f/` and `put x new/` fail, and nothing is read or made', { skip }, async () => {
      const before = await settledLogins();
      writeFileSync(join(local, 'x'), 'local\n');
      for (const command of ['get f/ got-sftp', 'put x new/', 'put x f/']) {
        const r = sftpBatch([command]);
        assert.notEqual(r.status, 0, command);
      }
      assert.equal(existsSync(join(local, 'got-sftp')), false);
      assert.deepEqual(tree(home), PLANTED);
      await noTransferOf(['/f', '/new'], before, 3);
    });

    const scp = (from: string, to: string) => withPassword('scp', ['-O', '-P', String(srv.sftpPort), from, to]);

    it('scp -O of `f/` sends nothing: the file is not read, nor on record as sent', { skip }, async () => {
      const before = await settledLogins();
      assert.notEqual(scp(`${USER}@127.0.0.1:f/`, join(local, 'got-scp')).status, 0);
      assert.equal(existsSync(join(local, 'got-scp')), false);
      // OpenSSH's scp refused the file named `f` it got for `f/`, after the server had read it all, on record.
      await noTransferOf(['/f'], before, 1);
    });

    it('scp -O to `new/` makes nothing, to `f/` overwrites nothing; a directory `d/` takes the file', { skip }, async () => {
      const before = await settledLogins();
      writeFileSync(join(local, 'x'), 'local\n');
      for (const target of ['new/', 'f/']) {
        const r = scp(join(local, 'x'), `${USER}@127.0.0.1:${target}`);
        assert.notEqual(r.status, 0, target);
        // OpenSSH's `scp -t` says so too: its open(2) with O_CREAT answers EISDIR.
        assert.match(r.stderr, new RegExp(`${target}: Is a directory`));
      }
      assert.deepEqual(tree(home), PLANTED);
      await noTransferOf(['/f', '/new'], before, 2);
      assert.equal(scp(join(local, 'x'), `${USER}@127.0.0.1:d/`).status, 0);
      assert.equal(readFileSync(join(home, 'd', 'x'), 'utf8'), 'local\n');
    });

    it('md5sum and sha256sum of `f/` answer as coreutils: Not a directory', { skip }, async () => {
      const before = await settledLogins();
      for (const program of ['md5sum', 'sha256sum']) {
        const r = withPassword('ssh', ['-p', String(srv.sftpPort), `${USER}@127.0.0.1`, `${program} f/`]);
        assert.notEqual(r.status, 0, program);
        assert.equal(r.stdout, '', `${program} printed a sum`);
        assert.equal(r.stderr, `${program}: f/: Not a directory\n`);
      }
      await noTransferOf(['/f'], before, 2);
    });
  });
});
