import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from 'basic-ftp';
import { RawFtp, listingLines } from './helpers/ftp-raw.js';
import { hasUnsafeChar } from '../src/session/unsafe-chars.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/** Names in created order: reversed and shuffled against byte order, so no directory order on disk is already sorted. */
const FILES = ['zeta', 'Zeta', 'é.txt', 'alpha', 'a b', 'Beta', '_under', '10', '9', ...Array.from({ length: 40 }, () => randomBytes(4).toString('hex'))];
const byteOrder = (names: string[]) => [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

/** `-rw-r--r--    1 ftp      ftp             5 Nov 24 21:10 name`: the name part (with ` -> target`, if any). */
function lsName(line: string): string {
  const m = /^[-dl?][-rwxsStT]{9} +\d+ ftp +ftp +\d+ [A-Z][a-z]{2} [ \d]\d (?:\d\d:\d\d| \d{4}) (.*)$/.exec(line);
  assert.ok(m, `not an ls -l line: ${JSON.stringify(line)}`);
  return m[1] as string;
}

/** One listing command's data, as lines, over a TLS data connection. */
const listing = (c: RawFtp, command: string): Promise<string[]> => listingLines(c, command, true);

describe('FTP listings: name order and symlink targets', () => {
  let srv: TestServer;
  let home: string;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
    home = srv.home('alice');
    for (const name of FILES) writeFileSync(join(home, name), name);
    mkdirSync(join(home, 'sub'));
    writeFileSync(join(home, 'sub', 'deep.txt'), 'deep');
    symlinkSync('alpha', join(home, 'link-relative'));
    symlinkSync('sub/../alpha', join(home, 'link-dotted'));
    symlinkSync(join(home, 'sub', 'deep.txt'), join(home, 'link-absolute-inside'));
    symlinkSync(srv.dir, join(home, 'link-absolute-outside'));
    symlinkSync('../../../../../../etc/passwd', join(home, 'link-climbing'));
  });
  after(() => srv.stop());

  const links: Record<string, string | null> = {
    'link-relative': 'alpha',
    'link-dotted': 'sub/../alpha',
    'link-absolute-inside': '/sub/deep.txt',
    'link-absolute-outside': null,
    'link-climbing': null,
  };
  const all = byteOrder([...FILES, 'sub', ...Object.keys(links)]);

  it('LIST, NLST and MLSD come in byte order of the names', async () => {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
    assert.deepEqual(await listing(c, 'NLST'), all);
    assert.deepEqual((await listing(c, 'LIST')).map((l) => lsName(l).replace(/ -> .*$/, '')), all);
    assert.deepEqual((await listing(c, 'MLSD')).map((l) => l.slice(l.indexOf(' ') + 1)), all);
    c.close();
  });

  it("NLST names what it lists as paths from the working directory: a directory's entries after the name given, a file as given", async () => {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
    // vsftpd and ProFTPD answer so; bare names sent for `NLST sub` were taken for files of the working directory
    // by a client acting on each line (classic ftp's `mget sub`, and its `mdelete sub`, deleting those).
    assert.deepEqual(await listing(c, 'NLST sub'), ['sub/deep.txt']);
    assert.deepEqual(await listing(c, 'NLST sub/'), ['sub/deep.txt']);
    assert.deepEqual(await listing(c, 'NLST /sub'), ['/sub/deep.txt']);
    assert.deepEqual(await listing(c, 'NLST -a sub'), ['sub/deep.txt']);
    assert.deepEqual(await listing(c, 'NLST sub/deep.txt'), ['sub/deep.txt']);
    assert.deepEqual(await listing(c, 'NLST /'), all.map((n) => `/${n}`));
    assert.equal((await c.cmd('CWD sub')).code, 250);
    assert.deepEqual(await listing(c, 'NLST ..').then((l) => l.slice(0, 2)), all.slice(0, 2).map((n) => `../${n}`));
    assert.deepEqual(await listing(c, 'NLST'), ['deep.txt']);
    c.close();
  });

  it('LIST and NLST take a wildcard in their last component, as classic ftp\'s mget *.txt sends it; a name that exists is itself', async () => {
    writeFileSync(join(home, 'sub', 'other.csv'), 'csv');
    writeFileSync(join(home, 'sub', 'star*'), 'a star in its name');
    const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
    try {
      assert.deepEqual(await listing(c, 'NLST sub/*.txt'), ['sub/deep.txt']);
      assert.deepEqual(await listing(c, 'NLST sub/*'), ['sub/deep.txt', 'sub/other.csv', 'sub/star*']);
      assert.deepEqual(await listing(c, 'NLST /sub/[do]*'), ['/sub/deep.txt', '/sub/other.csv']);
      assert.deepEqual((await listing(c, 'LIST -l sub/*.csv')).map(lsName), ['other.csv']);
      assert.deepEqual(await listing(c, 'NLST sub/star*'), ['sub/star*'], 'a name that exists is listed as itself');
      assert.deepEqual(await listing(c, 'NLST sub/*.none'), [], 'nothing matches: an empty listing');
      assert.deepEqual(await listing(c, 'NLST z*'), ['zeta']);
      assert.equal((await c.cmd('CWD sub')).code, 250);
      assert.deepEqual(await listing(c, 'NLST *.csv'), ['other.csv']);
      // Only the last component: a wildcard before it names nothing.
      await c.passive(true);
      c.send('NLST /s*/deep.txt\r\n');
      assert.equal((await c.read())?.code, 550);
    } finally {
      c.close();
    }
  });

  it('LIST shows a symlink as name -> target as the user sees it, never a host path', async () => {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
    const lines = await listing(c, 'LIST -la');
    for (const [name, target] of Object.entries(links)) {
      const line = lines.find((l) => lsName(l).split(' -> ')[0] === name);
      assert.ok(line, name);
      assert.match(line, /^l/);
      assert.equal(lsName(line), target === null ? name : `${name} -> ${target}`);
    }
    const text = lines.join('\n');
    assert.ok(!text.includes(srv.dir), 'no host path');
    assert.ok(!text.includes('etc/passwd'), 'nothing of a link that climbs out');
    // STAT <dir> sends the same lines over the control connection.
    const stat = await c.cmd('STAT .');
    assert.ok(stat.lines.some((l) => l.endsWith(' link-absolute-inside -> /sub/deep.txt')), stat.text);
    assert.ok(!stat.text.includes(srv.dir));
    c.close();
  });

  it('basic-ftp parses LIST into names and link targets', async () => {
    const client = new Client(30_000);
    await client.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'alice', password: 'alice password', secure: true, secureOptions: { rejectUnauthorized: false } });
    // basic-ftp prefers MLSD; LIST is what this test is about.
    (client as unknown as { availableListCommands: string[] }).availableListCommands = ['LIST'];
    const list = await client.list();
    assert.deepEqual(list.map((f) => f.name), all);
    const linkOf = (name: string) => list.find((f) => f.name === name)?.link;
    assert.equal(linkOf('link-relative'), 'alpha');
    assert.equal(linkOf('link-absolute-inside'), '/sub/deep.txt');
    assert.ok(!linkOf('link-absolute-outside'), 'no target for a link out of the home');
    client.close();
  });
});

/*
 * Names made on the host with characters no client may give (C0 such as CR,
 * LF, ESC and tab, C1 such as CSI, bidi controls, invisible characters): not listed by any
 * protocol. Before, FTP left out only CR and LF, and a review found ESC, CSI
 * and a bidi override sent as they were in LIST, NLST, MLSD and the STAT
 * reply on the control connection, and every one of them in SFTP READDIR.
 */
describe('names made on the host that no client may give', () => {
  const hostile = ['esc\x1b[31mred', 'csi\u009b2J', 'bidi\u202etxt.exe', 'tab\tname', 'cr\rname', 'lf\n226 forged', 'nel\u0085x', 'invoice\u200b.pdf', 'soft\u00adhyphen', 'rlm\u200f'];
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
    for (const name of [...hostile, 'plain.txt']) writeFileSync(join(srv.home('alice'), name), 'x');
    const evil = 'evil\x1b]0;owned\x07\u202e';
    mkdirSync(join(srv.home('alice'), evil));
    writeFileSync(join(srv.home('alice'), evil, 'f.txt'), 'reachable through the link');
    symlinkSync(evil, join(srv.home('alice'), 'to-evil'));
  });
  after(() => srv.stop());

  it('are listed by neither FTP (LIST, NLST, MLSD, STAT) nor SFTP (READDIR); the others are', async () => {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
    try {
      for (const command of ['LIST', 'NLST', 'MLSD']) {
        const lines = await listing(c, command);
        assert.ok(!lines.some((l) => hasUnsafeChar(l)), `${command}: ${JSON.stringify(lines)}`);
        const names = lines.map((l) => l.replace(/ -> .*$/, '')).map((l) => l.slice(l.lastIndexOf(' ') + 1));
        assert.deepEqual(names, ['plain.txt', 'to-evil'], command);
      }
      const stat = await c.cmd('STAT .');
      assert.equal(stat.code, 213);
      assert.equal(stat.lines.length, 4, JSON.stringify(stat.lines));
      assert.ok(!stat.lines.some((l) => hasUnsafeChar(l)), JSON.stringify(stat.lines));
      assert.match(stat.lines[1] ?? '', / plain\.txt$/);
    } finally {
      c.close();
    }
    const conn = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    try {
      const s = await sftpOf(conn);
      const names = (await call<{ filename: string }[]>((cb) => s.readdir('/', cb))).map((e) => e.filename);
      assert.deepEqual(names.filter((n) => n !== 'to-evil'), ['plain.txt']);
      // Found by a review: through a link the host made, REALPATH gave such a name to the client's prompt.
      assert.equal(await call<string>((cb) => s.realpath('to-evil', cb)), '/to-evil');
      assert.equal((await call<Buffer>((cb) => s.readFile('to-evil/f.txt', cb))).toString(), 'reachable through the link');
    } finally {
      conn.end();
    }
  });
});
