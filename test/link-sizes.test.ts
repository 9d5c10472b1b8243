import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loggedIn, readAll } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/*
 * Found by a review: a listed symlink's size was the length of its own text
 * on disk. For a link into the home written as a host path that is the
 * length of the server's real path (34 for /tmp/.../homes/alice/sub), and
 * for a link out of the home, whose target is hidden, the length of what
 * was hidden (11 for /etc/passwd). A link's size is now the length of the
 * target the user sees, or 0.
 */
describe('symlink sizes tell nothing of host paths', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      env: { SLUICE_FTP_TLS: 'optional' },
      users: [{ name: 'alice', password: 'alice password', args: ['--protocols', 'ftp,ftps,sftp'] }],
    });
    const home = srv.home('alice');
    mkdirSync(join(home, 'sub'));
    symlinkSync(join(home, 'sub'), join(home, 'abs_in'));
    symlinkSync('/etc/passwd', join(home, 'abs_out'));
    symlinkSync('sub', join(home, 'rel_in'));
  });
  after(() => srv.stop());

  // What the user sees: /sub (4 bytes), nothing, sub (3 bytes).
  const expected = { abs_in: 4, abs_out: 0, rel_in: 3 };

  it('SFTP: READDIR and LSTAT', { timeout: 60_000 }, async () => {
    const c = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    const sftp = await sftpOf(c);
    const entries = await call<{ filename: string; attrs: { size: number } }[]>((cb) => sftp.readdir('/', cb as never));
    const listed = Object.fromEntries(entries.filter((e) => e.filename in expected).map((e) => [e.filename, e.attrs.size]));
    assert.deepEqual(listed, expected);
    for (const [name, size] of Object.entries(expected)) {
      assert.equal((await call<{ size: number }>((cb) => sftp.lstat(`/${name}`, cb as never))).size, size, name);
    }
    c.end();
  });

  it('FTP: LIST and MLSD', { timeout: 60_000 }, async () => {
    const c = await loggedIn(srv.ftpPort, 'alice', 'alice password');
    const listing = async (cmd: string) => {
      const pasv = await c.passive(false);
      c.send(`${cmd}\r\n`);
      const data = await pasv.open();
      assert.equal((await c.read())?.code, 150);
      const text = (await readAll(data)).toString();
      assert.equal((await c.read())?.code, 226);
      return text;
    };
    const list = await listing('LIST');
    const mlsd = await listing('MLSD');
    c.close();
    for (const [name, size] of Object.entries(expected)) {
      const line = list.split('\r\n').find((l) => l.includes(` ${name}`)) ?? '';
      assert.equal(line.trim().split(/\s+/)[4], String(size), line);
      const fact = mlsd.split('\r\n').find((l) => l.endsWith(` ${name}`)) ?? '';
      const sizeFact = /(?:^|;)size=(\d+);/.exec(fact)?.[1];
      if (sizeFact !== undefined) assert.equal(sizeFact, String(size), fact);
    }
    assert.doesNotMatch(list + mlsd, /etc|passwd|sluice-srv/);
  });
});
