import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { codeOrEnded, loggedIn, RawFtp } from './helpers/ftp-raw.js';
import { sftpOf, sshConnect, userKeyPair } from './helpers/ssh.js';
import { TestServer } from './helpers/server.js';

/*
 * PATCH /users/:name with rules that now refuse a session's login (its
 * address denied or no longer allowed, its protocol taken away, TLS required
 * of a plain FTP session) must end that session, as disabling the user does:
 * an FTP session logged in before went on uploading and downloading for as
 * long as its client kept it busy. Sessions the new rules still admit go on.
 */
describe('admin API: rules changed so they refuse a live session end it', () => {
  let srv: TestServer;
  let api: AdminTarget;
  const patch = (name: string, body: unknown) => adminRequest(api, 'PATCH', `/api/v1/users/${name}`, { body });
  const login = (user: string, password: string, from?: string) => loggedIn(srv.ftpPort, user, password, from);
  /** Does the session still answer a command (true), or has the server ended it (false)? */
  const alive = async (c: RawFtp) => (await codeOrEnded(c, 'PWD')) === 257;

  const key = userKeyPair();
  const keyFile = join(mkdtempSync(join(tmpdir(), 'sluice-eli-key-')), 'eli.pub');

  before(async () => {
    writeFileSync(keyFile, key.public);
    srv = await TestServer.start({
      env: { SLUICE_ADMIN_LISTEN: './admin.sock' },
      yaml: 'ftp:\n  tls: optional\n',
      users: [
        { name: 'ann', password: 'ann-secret-1' },
        { name: 'ben', password: 'ben-secret-1' },
        { name: 'cy', password: 'cy-secret-12' },
        { name: 'dan', password: 'dan-secret-1' },
        { name: 'eli', password: 'eli-secret-1', args: ['--protocols', 'ftp,sftp', '--key', keyFile] },
      ],
    });
    api = { socketPath: join(srv.dir, 'admin.sock') };
  });
  after(async () => {
    await srv?.stop();
    rmSync(join(keyFile, '..'), { recursive: true, force: true });
  });

  it('denyIps covering one session’s address ends that session, not the other', { timeout: 60_000 }, async () => {
    const denied = await login('ann', 'ann-secret-1', '127.0.0.21');
    const kept = await login('ann', 'ann-secret-1', '127.0.0.22');
    const r = await patch('ann', { denyIps: ['127.0.0.21/32'] });
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 1);
    assert.equal(await alive(denied), false, 'the session from the denied address went on');
    assert.equal(await alive(kept), true);
    denied.close();
    kept.close();
  });

  it('protocols without ftp ends the plain FTP session', { timeout: 60_000 }, async () => {
    const c = await login('ben', 'ben-secret-1', '127.0.0.23');
    const r = await patch('ben', { protocols: ['sftp'] });
    assert.equal(r.status, 200, r.text);
    assert.equal(await alive(c), false, 'the FTP session went on after ftp was taken from the user');
    c.close();
  });

  it('a change that refuses nobody ends nothing', { timeout: 60_000 }, async () => {
    const c = await login('cy', 'cy-secret-12', '127.0.0.24');
    const r = await patch('cy', { quotaFiles: 10, allowIps: ['127.0.0.0/8'] });
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 0);
    assert.equal(await alive(c), true);
    c.close();
  });

  it('an SFTP session likewise: denyIps covering its address closes its connection', { timeout: 60_000 }, async () => {
    const conn = await sshConnect({ port: srv.sftpPort, localAddress: '127.0.0.25', username: 'dan', password: 'dan-secret-1' });
    await sftpOf(conn);
    const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
    conn.on('error', () => undefined);
    const r = await patch('dan', { denyIps: ['127.0.0.25/32'] });
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 1);
    await closed;
  });

  it('requireKey ends the sessions that logged in with a password, FTP and SFTP, not one that logged in with the key', { timeout: 60_000 }, async () => {
    const ftp = await login('eli', 'eli-secret-1', '127.0.0.26');
    const byPassword = await sshConnect({ port: srv.sftpPort, localAddress: '127.0.0.26', username: 'eli', password: 'eli-secret-1' });
    const byKey = await sshConnect({ port: srv.sftpPort, localAddress: '127.0.0.26', username: 'eli', privateKey: key.private });
    await sftpOf(byPassword);
    const keyed = await sftpOf(byKey);
    byPassword.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => byPassword.once('close', () => resolve()));
    const listed = (await adminRequest(api, 'GET', '/api/v1/sessions?user=eli')).json as { method: string }[];
    assert.deepEqual(listed.map((l) => l.method).sort(), ['password', 'password', 'publickey']);
    const r = await patch('eli', { requireKey: true });
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 2);
    assert.equal(await alive(ftp), false, 'the FTP session (a password login) went on');
    await closed;
    // The key's session goes on, and may open another channel.
    const names = await new Promise<unknown[]>((resolve, reject) => keyed.readdir('/', (err, list) => (err ? reject(err) : resolve(list))));
    assert.ok(Array.isArray(names));
    await sftpOf(byKey);
    ftp.close();
    byKey.end();
  });
});
