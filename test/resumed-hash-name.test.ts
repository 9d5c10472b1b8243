import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { loggedIn, startUpload, type RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/*
 * With audit.hashResumedUploads, a resumed upload hashes the whole file at
 * its end, for its record and for the receipts that answer HASH and
 * check-file: it read the file by its name, whatever file had that name by
 * then, and remembered that hash for the file it had written. A user renamed
 * their file away during a resumed FTP upload, moved its directory into
 * /inbox (list, upload, mkdir, rename: no download) and a file of the inbox
 * onto its name; at the end the record carried the inbox file's SHA-256 as
 * the upload's, and HASH of their own file answered it. Found by a review;
 * red before the fix.
 */
describe('a resumed upload hashes the file it wrote, not whatever has its name at the end', () => {
  let srv: TestServer;
  const user = 'hasher';
  const password = 'hasher password';
  let home: string;
  let ssh: ssh2.Client;
  let sftp: ssh2.SFTPWrapper;
  let ftp: RawFtp;

  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\naudit:\n  hashResumedUploads: true\n', users: [{ name: user, password }] });
    assert.equal(sluice(srv.dir, ['user', 'perm', user, '/inbox', 'list,upload,mkdir,rename'], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    home = srv.home(user);
    mkdirSync(join(home, 'inbox'), { recursive: true });
    mkdirSync(join(home, 'work/P'), { recursive: true });
    ssh = await sshConnect({ port: srv.sftpPort, username: user, password });
    sftp = await sftpOf(ssh);
    ftp = await loggedIn(srv.ftpPort, user, password);
  });
  after(async () => {
    ftp.close();
    ssh.end();
    await srv.stop();
  });

  it('renamed away, its directory moved into /inbox, an inbox file onto its name: the record and HASH give the file written', async () => {
    writeFileSync(join(home, 'work/P/f'), 'AAAA');
    writeFileSync(join(home, 'inbox/secret.txt'), 'SECRET-CONTENT');
    assert.equal((await ftp.cmd('REST 4')).code, 350);
    const data = await startUpload(ftp, '/work/P/f');
    await new Promise<void>((resolve) => data.write('BBBB', () => resolve()));
    // A session may not rename a file written in place any more (see upload-moved-dir); a shell still may.
    await assert.rejects(call((cb) => sftp.rename('/work/P/f', '/work/g', cb)), /being written/);
    renameSync(join(home, 'work/P/f'), join(home, 'work/g'));
    await call((cb) => sftp.rename('/work/P', '/inbox/P', cb));
    await call((cb) => sftp.rename('/inbox/secret.txt', '/inbox/P/f', cb));
    data.end();
    assert.equal((await ftp.read())?.code, 226);
    assert.equal(readFileSync(join(home, 'work/g'), 'utf8'), 'AAAABBBB');

    const records = await srv.auditUntil((r) => r.event === 'upload' && r.path === '/work/P/f');
    const rec = records.find((r) => r.event === 'upload' && r.path === '/work/P/f');
    assert.notEqual(rec?.file_sha256, sha256('SECRET-CONTENT'), 'the record carries the inbox file\'s hash');
    const hash = await ftp.cmd('HASH /work/g');
    assert.doesNotMatch(hash.text, new RegExp(sha256('SECRET-CONTENT')), 'HASH of the user\'s file answers the inbox file\'s hash');
    assert.match(hash.text, new RegExp(sha256('AAAABBBB')));
  });
});
