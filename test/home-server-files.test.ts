import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

/*
 * Administration refuses a home that holds the server's own files, but a
 * home stored before that check (or a config changed later, naming a hook
 * program inside an existing home) is only met at login: the login must not
 * open it, over any protocol.
 */
describe("a stored home that holds the server's own files is not opened at login", () => {
  let srv: TestServer;
  let outside: string;
  const script = () => join(outside, 'hooks', 'notify.sh');
  before(async () => {
    outside = mkdtempSync(join(tmpdir(), 'sluice-old-home-'));
    mkdirSync(join(outside, 'hooks'));
    writeFileSync(script(), '#!/bin/sh\n', { mode: 0o755 });
    const yaml = ['hooks:', '  actions:', '    - name: notify', '      on: [upload]', `      command: ['${script()}', '{path}']`, ''].join('\n');
    srv = await TestServer.start({
      yaml,
      env: { SLUICE_FTP_TLS: 'optional' },
      users: [
        { name: 'older', password: 'older password', args: ['--protocols', 'ftp,ftps,sftp'] },
        { name: 'other', password: 'other password', args: ['--protocols', 'ftp,ftps,sftp'] },
      ],
    });
    // As a release before the check stored it, or an edit of the database.
    const db = new Database(join(srv.dir, 'data', 'sluice.db'));
    try {
      db.pragma('busy_timeout = 5000');
      assert.equal(db.prepare('UPDATE users SET home = ? WHERE name = ?').run(join(outside, 'hooks'), 'older').changes, 1);
    } finally {
      db.close();
    }
  });
  after(async () => {
    await srv.stop();
    rmSync(outside, { recursive: true, force: true });
  });

  it('FTP: the password is right, the home is refused, nothing in it reached', { timeout: 60_000 }, async () => {
    const c = await RawFtp.connect(srv.ftpPort, false);
    assert.equal((await c.read())?.code, 220);
    const reply = await c.login('older', 'older password');
    assert.equal(reply.code, 451, reply.text);
    assert.notEqual((await c.cmd('STOR notify.sh')).code, 150, 'no upload without a session');
    c.close();
    assert.equal(readFileSync(script(), 'utf8'), '#!/bin/sh\n');
    assert.match(srv.log, /would hold the server's own [^"]*notify\.sh/);
  });

  it('SFTP: no session opens', { timeout: 60_000 }, async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'older', password: 'older password' }).catch((err: Error) => err);
    if (!(conn instanceof Error)) {
      const opened = await new Promise<boolean>((resolve) => conn.sftp((err) => resolve(!err)));
      conn.end();
      assert.equal(opened, false, 'the sftp subsystem must not start on that home');
    }
  });

  it('everyone else logs in as before', { timeout: 60_000 }, async () => {
    const c = await RawFtp.connect(srv.ftpPort, false);
    await c.read();
    assert.equal((await c.login('other', 'other password')).code, 230);
    c.close();
  });
});
