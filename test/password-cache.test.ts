import assert from 'node:assert/strict';
import argon2 from 'argon2';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

/**
 * A password that verified is answered without argon2 on the next logins
 * (auth.passwordCache, src/auth/verified-passwords.ts). What that must never
 * do: let an old password in after a change, or let a kept login past the
 * account's rules.
 */
/** Server CPU (user + system) of the process so far, ms. */
function cpuMs(pid: number | undefined): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

/** CPU of one argon2id verification at the server's parameters, here, ms. */
async function verifyMs(): Promise<number> {
  const hash = await argon2.hash('x', { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 });
  const t = process.cpuUsage();
  for (let i = 0; i < 3; i++) await argon2.verify(hash, 'x');
  const spent = process.cpuUsage(t);
  return (spent.user + spent.system) / 3000;
}

async function ftpLogin(port: number, user: string, password: string): Promise<number> {
  const c = await RawFtp.connect(port);
  try {
    await c.read();
    return (await c.login(user, password)).code;
  } finally {
    c.close();
  }
}

describe('passwords kept after they verified', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      // The refusals below would otherwise ban 127.0.0.1 before the last case.
      yaml: 'ftp:\n  tls: optional\nauth:\n  failureDelay: 0\ndefender:\n  threshold: 100\n',
      env: { SLUICE_WORKERS: '1' },
      users: [
        { name: 'alice', password: 'alice old password' },
        { name: 'bob', password: 'bob password' },
        { name: 'cpu', password: 'cpu password' },
        { name: 'far', password: 'far password', args: ['--allow-ip', '10.0.0.0/8'] },
      ],
    });
  });
  after(() => srv?.stop());

  const ftp = (user: string, password: string) => ftpLogin(srv.ftpPort, user, password);
  const ssh = async (user: string, password: string): Promise<void> => (await sshConnect({ port: srv.sftpPort, username: user, password })).end();
  const failures = async (user: string) =>
    (await srv.audit()).filter((r) => r.event === 'login-failed' && r.user === user).map((r) => r.reason);

  it('a changed password: the old one is refused at once over FTP and SFTP, a wrong one always was, the new one is taken', async () => {
    for (let i = 0; i < 2; i++) {
      assert.equal(await ftp('alice', 'alice old password'), 230);
      await ssh('alice', 'alice old password');
    }
    assert.equal(await ftp('alice', 'alice old password!'), 530);
    const changed = sluice(srv.dir, ['user', 'passwd', 'alice', '--password-stdin'], 'alice new password\n');
    assert.equal(changed.code, 0, changed.stderr);
    assert.equal(await ftp('alice', 'alice old password'), 530);
    await assert.rejects(ssh('alice', 'alice old password'));
    assert.equal(await ftp('alice', 'alice new password'), 230);
    await ssh('alice', 'alice new password');
    assert.deepEqual(await failures('alice'), ['bad-password', 'bad-password', 'bad-password']);
  });

  it("a kept password does not outlive the account's rules: a disabled user is refused", async () => {
    assert.equal(await ftp('bob', 'bob password'), 230);
    await ssh('bob', 'bob password');
    assert.equal(sluice(srv.dir, ['user', 'disable', 'bob']).code, 0);
    assert.equal(await ftp('bob', 'bob password'), 530);
    await assert.rejects(ssh('bob', 'bob password'));
    assert.deepEqual(await failures('bob'), ['disabled', 'disabled']);
  });

  it('repeated logins cost the server less CPU than a handful of argon2 verifications', async () => {
    const verify = await verifyMs();
    assert.equal(await ftp('cpu', 'cpu password'), 230);
    const c0 = cpuMs(srv.pid);
    for (let i = 0; i < 30; i++) assert.equal(await ftp('cpu', 'cpu password'), 230);
    const used = cpuMs(srv.pid) - c0;
    // Each of the 30 would be one full verification without the cache: 30 x verify.
    assert.ok(used < 10 * verify, `30 logins took ${used} ms of server CPU; one argon2 verification takes ${verify.toFixed(1)} ms`);
  });

  it('a right password for an account refused anyway is never kept: every refusal verifies in full', async () => {
    const verify = await verifyMs();
    const c0 = cpuMs(srv.pid);
    for (let i = 0; i < 4; i++) assert.equal(await ftp('far', 'far password'), 530);
    const used = cpuMs(srv.pid) - c0;
    // Kept after the first, the other three would be answered at once, and sooner than a wrong password.
    assert.ok(used > 2.5 * verify, `4 refusals took ${used} ms of server CPU; one argon2 verification takes ${verify.toFixed(1)} ms`);
    assert.deepEqual(await failures('far'), ['address-not-allowed', 'address-not-allowed', 'address-not-allowed', 'address-not-allowed']);
  });
});

describe('auth.passwordCache: 0', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\nauth:\n  passwordCache: 0\n', env: { SLUICE_WORKERS: '1' }, users: [{ name: 'every', password: 'every password' }] });
  });
  after(() => srv?.stop());

  it('verifies every login with argon2', async () => {
    const verify = await verifyMs();
    assert.equal(await ftpLogin(srv.ftpPort, 'every', 'every password'), 230);
    const c0 = cpuMs(srv.pid);
    for (let i = 0; i < 8; i++) assert.equal(await ftpLogin(srv.ftpPort, 'every', 'every password'), 230);
    const used = cpuMs(srv.pid) - c0;
    assert.ok(used > 5 * verify, `8 logins took ${used} ms of server CPU; one argon2 verification takes ${verify.toFixed(1)} ms`);
  });
});
