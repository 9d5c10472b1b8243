import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { FtpClient, SftpClient, outcome } from './helpers/file-clients.js';
import { TestServer } from './helpers/server.js';
import { call } from './helpers/ssh.js';

/*
 * Vulnerability 7 of issue 11: an upload-only user must not learn whether a
 * name exists in the drop box. Every probe below is made for an existing
 * file, an existing directory and a missing name, as `/incoming/NAME` and as
 * `/incoming/NAME/x`, and the three answers must be the same. The one thing
 * such a user can learn is whether a write creates something: a new name
 * (or a file in an existing subdirectory) is stored, an existing one is
 * refused like everything else. Those "creating" probes are checked apart.
 */

type Probe = (path: string) => Promise<string>;
type Case = 'file' | 'dir' | 'missing';
const CASES: Case[] = ['file', 'dir', 'missing'];
const OPEN = { READ: 0x01, WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10, EXCL: 0x20 };

describe('a drop box is no existence oracle', () => {
  let srv: TestServer;
  let home: string;
  let ftp: FtpClient;
  let sftp: SftpClient;
  let serial = 0;

  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'drop', password: 'drop password', args: ['--perms', 'none'] }] });
    assert.equal(sluice(srv.dir, ['user', 'perm', 'drop', '/incoming', 'upload'], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    home = srv.home('drop');
    mkdirSync(join(home, 'incoming/adir'), { recursive: true });
    writeFileSync(join(home, 'incoming/afile'), 'hello');
    ftp = await FtpClient.connect('ftpes', srv, 'drop', 'drop password');
    sftp = await SftpClient.connect(srv, 'drop', 'drop password');
  });
  after(async () => {
    ftp.close();
    sftp.close();
    await srv.stop();
  });

  /** The path a probe names, and the text that stands for the name in its answer. */
  function target(c: Case, nested: boolean): { path: string; names: string[] } {
    const n = ++serial;
    const name = c === 'file' ? 'afile' : c === 'dir' ? 'adir' : `missing-${n}`;
    const leaf = `x-${n}`;
    return { path: nested ? `/incoming/${name}/${leaf}` : `/incoming/${name}`, names: [name, leaf] };
  }

  async function answers(probe: Probe, nested: boolean): Promise<Record<Case, string>> {
    const out = {} as Record<Case, string>;
    for (const c of CASES) {
      const { path, names } = target(c, nested);
      let text = await probe(path);
      for (const n of names) text = text.split(n).join('NAME');
      out[c] = text;
    }
    return out;
  }

  const ftpLine = (verb: string): Probe => async (path) => {
    const r = await ftp.cmd(`${verb} ${path}`);
    return `${r.code} ${r.text}`;
  };
  const ftpData = (verb: string, upload?: string, rest?: number): Probe => async (path) => {
    if (rest !== undefined) await ftp.cmd(`REST ${rest}`);
    const { replies } = await ftp.transfer(`${verb} ${path}`, upload);
    const last = replies[replies.length - 1];
    return last?.code === 226 ? 'created' : replies.map((r) => `${r.code} ${r.text}`).join(' | ');
  };
  const s = () => sftp.sftp;
  const sftpOpen = (flags: number): Probe => (path) =>
    outcome(
      (async () => {
        const handle = await call<Buffer>((cb) => s().open(path, flags, cb));
        await call((cb) => s().close(handle, cb));
      })(),
    ).then((o) => (o === 'ok' ? 'created' : o));
  const sftpValue = (fn: (path: string, cb: (err: Error | null | undefined, v?: string) => void) => void): Probe => async (path) => {
    try {
      return `ok ${await call<string>((cb) => fn(path, cb))}`;
    } catch (err) {
      return outcome(Promise.reject(err));
    }
  };

  const same: [string, Probe][] = [
    ['FTP SIZE', ftpLine('SIZE')],
    ['FTP MDTM', ftpLine('MDTM')],
    ['FTP MLST', ftpLine('MLST')],
    ['FTP STAT', ftpLine('STAT')],
    ['FTP RNFR', ftpLine('RNFR')],
    ['FTP DELE', ftpLine('DELE')],
    ['FTP RMD', ftpLine('RMD')],
    ['FTP MKD', ftpLine('MKD')],
    ['FTP LIST', ftpData('LIST')],
    ['FTP NLST', ftpData('NLST')],
    ['FTP MLSD', ftpData('MLSD')],
    ['FTP RETR', ftpData('RETR')],
    ['FTP REST 3 + STOR', ftpData('STOR', 'resumed', 3)],
    ['SFTP STAT', (p) => outcome(call((cb) => s().stat(p, cb)))],
    ['SFTP LSTAT', (p) => outcome(call((cb) => s().lstat(p, cb)))],
    ['SFTP REALPATH', sftpValue((p, cb) => s().realpath(p, cb))],
    ['SFTP READLINK', sftpValue((p, cb) => s().readlink(p, cb))],
    ['SFTP expand-path', sftpValue((p, cb) => s().ext_openssh_expandPath(p, cb))],
    ['SFTP statvfs', (p) => outcome(call((cb) => s().ext_openssh_statvfs(p, cb)))],
    ['SFTP OPEN read', sftpOpen(OPEN.READ)],
    ['SFTP OPEN write, no CREAT', sftpOpen(OPEN.WRITE)],
    ['SFTP OPEN write+trunc, no CREAT', sftpOpen(OPEN.WRITE | OPEN.TRUNC)],
    ['SFTP OPENDIR', (p) => outcome(call((cb) => s().opendir(p, cb)))],
    ['SFTP REMOVE', (p) => outcome(call((cb) => s().unlink(p, cb)))],
    ['SFTP RMDIR', (p) => outcome(call((cb) => s().rmdir(p, cb)))],
    ['SFTP MKDIR', (p) => outcome(call((cb) => s().mkdir(p, cb)))],
    ['SFTP SETSTAT', (p) => outcome(call((cb) => s().utimes(p, 1, 1, cb)))],
    ['SFTP RENAME', (p) => outcome(call((cb) => s().rename(p, '/incoming/elsewhere', cb)))],
    ['SFTP hardlink', (p) => outcome(call((cb) => s().ext_openssh_hardlink(p, '/incoming/elsewhere', cb)))],
  ];
  const creating: [string, Probe][] = [
    ['FTP STOR', ftpData('STOR', 'new')],
    ['FTP APPE', ftpData('APPE', 'new')],
    ['SFTP OPEN write+creat+trunc', sftpOpen(OPEN.WRITE | OPEN.CREAT | OPEN.TRUNC)],
    ['SFTP OPEN write+creat', sftpOpen(OPEN.WRITE | OPEN.CREAT)],
    ['SFTP OPEN write+creat+excl', sftpOpen(OPEN.WRITE | OPEN.CREAT | OPEN.EXCL)],
    ['SFTP OPEN write+creat+append', sftpOpen(OPEN.WRITE | OPEN.CREAT | OPEN.APPEND)],
  ];

  for (const nested of [false, true]) {
    const form = nested ? '/incoming/NAME/x' : '/incoming/NAME';
    for (const [label, probe] of same) {
      it(`${label} ${form}: one answer whatever exists`, async () => {
        const a = await answers(probe, nested);
        assert.equal(a.dir, a.file, `directory and file told apart: ${JSON.stringify(a)}`);
        assert.equal(a.missing, a.file, `missing name and file told apart: ${JSON.stringify(a)}`);
        if (label !== 'SFTP REALPATH' && label !== 'SFTP expand-path') assert.match(a.file, /Permission denied/);
      });
    }
    for (const [label, probe] of creating) {
      it(`${label} ${form}: creates what is new, refuses the rest alike`, async () => {
        const a = await answers(probe, nested);
        // A new name is stored; in the nested form the existing directory is where the new file goes.
        const made: Case = nested ? 'dir' : 'missing';
        const refused = CASES.filter((c) => c !== made);
        assert.equal(a[made], 'created', JSON.stringify(a));
        assert.equal(a[refused[0] as Case], a[refused[1] as Case], `told apart: ${JSON.stringify(a)}`);
        assert.match(a[refused[0] as Case], /Permission denied/);
      });
    }
  }

  it('FTP CWD enters an existing directory, which storing NAME/x tells as well, and refuses a file and a missing name alike', async () => {
    const cwd = async (path: string) => {
      const r = await ftp.cmd(`CWD ${path}`);
      return `${r.code} ${r.text}`;
    };
    assert.match(await cwd('/incoming/adir'), /^250 /);
    const file = await cwd('/incoming/afile');
    assert.match(file, /^550 .*Permission denied/);
    assert.equal(await cwd(`/incoming/missing-${++serial}`), file);
    for (const c of ['afile', 'adir', `missing-${++serial}`]) assert.equal(await cwd(`/incoming/${c}/x`), file, c);
  });

  it('the drop box still takes new files and keeps existing ones untouched', async () => {
    assert.equal(readFileSync(join(home, 'incoming/afile'), 'utf8'), 'hello');
    assert.ok(readdirSync(join(home, 'incoming/adir')).length > 0, 'files were stored in the existing subdirectory');
    assert.equal((await ftp.cmd('CWD /incoming')).code, 250, 'the configured directory itself can be entered');
    const stat = await call<ssh2.Stats>((cb) => sftp.sftp.stat('/incoming', cb));
    assert.ok(stat.isDirectory());
  });

  it('a tree can be uploaded into a drop box that allows mkdir (curl --ftp-create-dirs: MKD, then CWD into it)', () => {
    assert.equal(sluice(srv.dir, ['user', 'perm', 'drop', '/tree', 'upload,mkdir'], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    mkdirSync(join(home, 'tree/old'), { recursive: true });
    const file = join(srv.dir, 'tree-upload.txt');
    writeFileSync(file, 'a tree of files');
    for (const dest of ['new/deeper/f.txt', 'old/f.txt']) {
      const r = spawnSync('curl', ['-sS', '-k', '--ssl-reqd', '--ftp-create-dirs', '-T', file, `ftp://drop:drop%20password@127.0.0.1:${srv.ftpPort}/tree/${dest}`], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, `${dest}: ${r.stderr}`);
      assert.equal(readFileSync(join(home, 'tree', dest), 'utf8'), 'a tree of files');
    }
  });
});
