import assert from 'node:assert/strict';
import { mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FtpClient, SftpClient, outcome } from './helpers/file-clients.js';
import { TestServer } from './helpers/server.js';
import { call } from './helpers/ssh.js';

/* The smaller gaps of issue 11: READLINK never names what lies above the home; the home cannot be chmod-ed. */
describe('links as the user sees them, and a home that keeps its mode', () => {
  let srv: TestServer;
  let home: string;
  let sftp: SftpClient;
  let ftp: FtpClient;

  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'gap', password: 'gap password', args: ['--perms', 'all'] }] });
    home = srv.home('gap');
    mkdirSync(join(home, 'sub'));
    writeFileSync(join(home, 'file.txt'), 'F');
    // Planted links, as an administrator or another tool could leave them.
    symlinkSync('../../etc', join(home, 'up'));
    symlinkSync('../../../homes/other/secret-name', join(home, 'sub/climb'));
    symlinkSync('../file.txt', join(home, 'sub/rel-ok'));
    symlinkSync(join(home, 'sub'), join(home, 'abs-in'));
    symlinkSync(`${home}/../other/private-name`, join(home, 'abs-dotdot'));
    symlinkSync('.', join(home, 'self'));
    sftp = await SftpClient.connect(srv, 'gap', 'gap password');
    ftp = await FtpClient.connect('ftpes', srv, 'gap', 'gap password');
  });
  after(async () => {
    sftp.close();
    ftp.close();
    await srv.stop();
  });

  const readlink = (p: string) => call<string>((cb) => sftp.sftp.readlink(p, cb));

  it('READLINK refuses a target that climbs above the home, and shows one inside as it is', async () => {
    for (const link of ['/up', '/sub/climb', '/abs-dotdot']) {
      const o = await outcome(readlink(link));
      assert.match(o, /^3 Permission denied/, `${link}: ${o}`);
      assert.doesNotMatch(o, /etc|secret-name|private-name|homes/);
    }
    assert.equal(await readlink('/sub/rel-ok'), '../file.txt');
    assert.equal(await readlink('/abs-in'), '/sub');
  });

  it('the home cannot be chmod-ed (SFTP SETSTAT, FTP SITE CHMOD), not even through a link to it', async () => {
    const before = statSync(home).mode & 0o7777;
    assert.match(await outcome(call((cb) => sftp.sftp.chmod('/', 0o777, cb))), /^3 /);
    assert.match(await outcome(call((cb) => sftp.sftp.chmod('/self', 0o700, cb))), /^3 /);
    assert.equal((await ftp.cmd('SITE CHMOD 777 /')).code, 550);
    assert.equal((await ftp.cmd('SITE CHMOD 700 /self')).code, 550);
    assert.equal(statSync(home).mode & 0o7777, before);
    // Anything below the home still can.
    assert.equal((await ftp.cmd('SITE CHMOD 600 /file.txt')).code, 200);
    assert.equal(statSync(join(home, 'file.txt')).mode & 0o777, 0o600);
  });
});
